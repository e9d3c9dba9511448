"""`mm2latent edit` (text or spatial edits at one or several betas, optional --align) and
`mm2latent dataset export` (a sample's image, mask, sketch and 3DMM code as plain files).

Exit codes: 0 done, 2 a user error shown as one red line.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from flows.cli_common import Device, Models, Out, Preset, console, note_tiny, user_errors
from flows.cli_conditions import ConditionValues, Ref, choices, flag, one_given
from mm2latent.modalities.registry import default_registry
from mm2latent.training.registry import default_registry_url
from mm2latent_core.modalities.spec import ModalityRegistry


def parse_betas(text: str) -> list[float]:
    """'0,0.5,1' -> [0.0, 0.5, 1.0]; ConfigError naming the bad item."""
    from mm2latent.batch_inputs import check_betas
    from mm2latent_core.errors import ConfigError

    values = []
    for item in text.split(","):
        try:
            values.append(float(item))
        except ValueError as e:
            raise ConfigError(f"--beta {text!r}: {item.strip()!r} is not a number; give a comma "
                              "list such as 0,0.5,1.") from e
    return list(check_betas(values))


def _photo(image: str, align: bool, size: int, device: str):
    """(1, 3, S, S) float photo: aligned from landmarks with --align, else checked to be square."""
    import torch

    from mm2latent.alignment import align_face, check_looks_aligned, detect_landmarks
    from mm2latent.conditions import load_photo

    photo = load_photo(image)
    if not align:
        check_looks_aligned(photo.shape[2], photo.shape[3], what=image)
        return photo
    rgb = (photo[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()  # (H, W, 3)
    aligned = align_face(rgb, detect_landmarks(rgb, device), size)
    return torch.from_numpy(aligned).permute(2, 0, 1).float().div(255.0).unsqueeze(0)


def edit_command(
    image: Annotated[str, typer.Argument(help=f"The photo: FFHQ-aligned and square (or pass --align); {Ref}.")],
    target: Annotated[Optional[str], typer.Option(help="Text edit: description of the result, e.g. 'a smiling face'.")] = None,
    pivot: Annotated[str, typer.Option(help="Text edit: neutral description.")] = "a face",
    targets: ConditionValues = None,  # one --target-<modality> option per registry condition
    beta: Annotated[str, typer.Option(help="Edit strength, or a comma list (0,1,2) for a strip original | beta_1 | ...; 0 = e4e reconstruction.")] = "1",
    modality: Annotated[Optional[str], typer.Option(help=f"Text edits: MappingNet to use ({choices(default_registry().conditions)}; default {default_registry().conditions[0]}). Spatial edits: the target's.")] = None,
    own: ConditionValues = None,  # one --<modality> option per registry condition
    align: Annotated[bool, typer.Option(help="Align an in-the-wild photo to FFHQ from 68 landmarks (needs mm2latent\\[align]).")] = False,
    models: Models = "runs/tiny", preset: Preset = "tiny", out: Out = "edited.png",
    device: Device = "cpu",
    modalities: ModalityRegistry = None,  # the registry the options were derived from
) -> None:
    """Edit a photo with text or a target mask / sketch / 3DMM code (e4e inversion + MappingNet direction)."""
    from mm2latent.conditions import load_condition
    from mm2latent.editing import spatial_edit, text_edit
    from mm2latent_core.errors import ConfigError
    from mm2latent.inference import load_inference, write_png
    from mm2latent.input_checks import check_device
    from mm2latent.modalities.codecs import encode_png
    from storage.atomic import atomic_write_bytes
    from storage.path_checks import check_output_file

    with user_errors(image, models, out):
        check_device(device)
        check_output_file(out)
        spatial_target = one_given(targets, "target-", "spatial target")
        if (target is None) == (spatial_target is None):
            raise ConfigError("give either --target TEXT (a text edit) or one of "
                              f"{', '.join(flag(m, 'target-') for m in targets)} (a spatial edit).")
        kind = "text" if spatial_target is None else spatial_target[0]
        if kind != "text" and modality not in (None, kind):
            raise ConfigError(f"{flag(kind, 'target-')} edits with the {kind} MappingNet; drop --modality {modality}.")
        # Text edits default to the registry's first condition (mask), as the app's editor.
        modality = modality or (modalities.conditions[0] if kind == "text" else kind)
        own_condition = one_given(own, "", "own condition")
        if own_condition is not None and own_condition[0] != modality:
            raise ConfigError(f"{flag(own_condition[0])} was given but the edit uses the {modality} MappingNet; make them agree.")
        betas = parse_betas(beta)
        model = load_inference(preset, default_registry_url(models), modality, device,
                               modalities=modalities)
        photo = _photo(image, align, model.generator.cfg.img_resolution, device)
        condition = None if own_condition is None else load_condition(modality, own_condition[1], modalities)
        if kind == "text":
            result = text_edit(model, photo, target, pivot, betas, spatial=condition)
        else:
            result = spatial_edit(model, photo, load_condition(modality, spatial_target[1], modalities),
                                  betas, pivot=condition)
        if len(betas) == 1:
            write_png(out, result.images[:, 0])
        else:
            atomic_write_bytes(out, encode_png(result.strip()))
    note_tiny(preset)
    what = f"strip: original | beta {', '.join(f'{b:g}' for b in betas)}" if len(betas) > 1 else f"beta {betas[0]:g}"
    console().print(f"[green]wrote[/] {out} ({what}; {kind} edit, {modality} MappingNet)", soft_wrap=True)


def export_command(
    dataset: Annotated[str, typer.Argument(help="Dataset root URL (e.g. data/tiny).")],
    index: Annotated[int, typer.Argument(help="Global sample index.")],
    out: Annotated[str, typer.Option(help="Directory to write image.png, mask.png, sketch.png, flame.npy, ...")] = "sample",
) -> None:
    """Export one sample's image, mask, sketch and 3DMM code as plain files (inputs for generate / edit)."""
    from storage.path_checks import check_output_dir
    from storage.samples import export_sample

    with user_errors(dataset, out):
        check_output_dir(out, inputs=[dataset])  # never into the dataset it reads
        written = export_sample(dataset, index, out)
    console().print(f"[green]wrote[/] {', '.join(written)}", soft_wrap=True)


def edit_dataset_command(
    input: Annotated[str, typer.Argument(help="Folder / URL of FFHQ-aligned photos, or a synth-data dataset (e.g. data/tiny).")],
    spec: Annotated[str, typer.Option(help="YAML edit spec (see examples/edits-tiny.yaml).")],
    models: Models = "runs/tiny", preset: Preset = "tiny",
    out: Annotated[str, typer.Option(help="Output dataset root.")] = "data/edits",
    samples_per_shard: Annotated[int, typer.Option(help="Photos per .tar shard.")] = 64,
    device: Device = "cpu",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing dataset at --out.")] = False,
) -> None:
    """Edit every photo of a folder or dataset by a YAML spec into shards (resumable: rerun it)."""
    from flows.cli_flow import run_flow
    from flows.edit_dataset import edit_dataset
    from mm2latent.edit_dataset.params import parse_edit_params
    from mm2latent.edit_dataset.run import validate

    values = dict(input=input, spec=spec, models=models, out=out, preset=preset,
                  samples_per_shard=samples_per_shard, device=device)
    from storage.path_checks import check_output_dir

    with user_errors(input, out):
        check_output_dir(out, inputs=[input])
        validate(parse_edit_params(**values), overwrite)  # user errors fail before Prefect starts
        summary = run_flow(lambda on_progress: edit_dataset(**values, overwrite=overwrite,
                                                            on_progress=on_progress))
    note_tiny(preset)
    console().print(f"[bold]{summary.out}[/]: {summary.ok} edited, {summary.failures} failed, "
                    f"{summary.shards} shards; edits {', '.join(summary.edits)}", soft_wrap=True)


def generate_rows(rows: str, models: str, preset: str, out: str, device: str) -> None:
    """`generate --from rows.jsonl`: one image per row into shards at `out` (resumable)."""
    from mm2latent.generate_rows import generate_shard, load_row_models, plan_rows

    from storage.path_checks import check_output_dir

    with user_errors(rows, out):
        check_output_dir(out)
        plan, todo = plan_rows(rows, models, preset, out)
        nets = load_row_models(plan, models, device) if todo else None
        stats = [generate_shard(plan, nets, shard) for shard in todo]
    note_tiny(preset)
    made = sum(s.ok for s in stats)
    console().print(f"[green]wrote[/] {out}: {len(plan.rows)} rows, {made} generated now, "
                    f"{len(plan.rows) - sum(len(plan.shard_indices(s)) for s in todo)} already done", soft_wrap=True)
