"""`mm2latent generate` and `mm2latent edit`: text(+spatial) to image, and real-image editing.

Two typer commands; flows/cli.py mounts them with `add_inference_commands(app)`.
Exit codes: 0 done, 2 a user error (bad mask / sketch / flame file, empty caption, missing
registered model) shown as one red line.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from flows.cli_common import Device, Models, Out, Preset, console, note_tiny, user_errors
from flows.cli_conditions import (ConditionValues, choices, condition_options, flag,
                                  with_condition_options)
from flows.cli_edit import edit_command, generate_rows
from mm2latent.modalities.registry import default_registry
from mm2latent.training.registry import default_registry_url
from mm2latent_core.modalities.spec import ModalityRegistry



def _condition(conditions: ConditionValues, modalities: ModalityRegistry):
    """(modality, raw condition array) from exactly one of the condition file options."""
    from mm2latent.conditions import load_condition
    from mm2latent_core.errors import ConfigError

    given = {m: url for m, url in conditions.items() if url}
    if len(given) != 1:
        wanted = [f"{flag(m)} {modalities.get(m).exts[0].rsplit('.', 1)[-1].upper()}" for m in conditions]
        raise ConfigError(f"give exactly one spatial condition: {choices(tuple(wanted))} "
                          f"(got {', '.join(flag(m) for m in given) or 'none'}).")
    modality, url = next(iter(given.items()))
    return modality, load_condition(modality, url, modalities)


def generate_command(
    text: Annotated[Optional[str], typer.Option(help="Caption, e.g. 'a smiling woman with blond hair'.")] = None,
    conditions: ConditionValues = None,  # one --<modality> option per registry condition
    models: Models = "runs/tiny", preset: Preset = "tiny", out: Out = "out.png",
    n: Annotated[int, typer.Option("--n", min=1, help="Images to make (they differ in StyleGAN2 noise only).")] = 1,
    seed: Annotated[Optional[int], typer.Option(help="Noise seed; default: constant noise for --n 1, seed 0 otherwise.")] = None,
    psi: Annotated[float, typer.Option(help="Truncation psi (1 = none).")] = 1.0,
    device: Device = "cpu",
    rows: Annotated[Optional[str], typer.Option("--from", help="JSON-lines file, one {text, mask|sketch|flame, seed} per line: writes shards into --out (a directory).")] = None,
    modalities: ModalityRegistry = None,  # the registry the options were derived from
) -> None:
    """Generate images from a caption and a mask, sketch or 3DMM code (or many, --from rows.jsonl)."""
    from mm2latent_core.errors import ConfigError
    from mm2latent.inference import load_inference, write_png
    from mm2latent.input_checks import check_device, check_psi
    from storage.path_checks import check_output_file

    if rows is not None:
        return generate_rows(rows, models, preset, out, device)
    with user_errors(models, out):
        if text is None:
            raise ConfigError("give --text CAPTION (or --from rows.jsonl for many images).")
        check_psi(psi)
        check_device(device)
        check_output_file(out)
        modality, condition = _condition(conditions, modalities)
        model = load_inference(preset, default_registry_url(models), modality, device,
                               modalities=modalities)
        noise_seed = seed if seed is not None or n == 1 else 0
        images = model.generate([text] * n, condition, truncation_psi=psi, noise_seed=noise_seed)
        write_png(out, images)
    note_tiny(preset)
    console().print(f"[green]wrote[/] {out} ({n} image(s), {images.shape[2]} px, {modality})")


def cli_modalities() -> ModalityRegistry:
    """default_registry(), read once as the CLI starts; a bad MM2LATENT_MODALITIES plugin is
    one red line and exit code 2 (this runs while the app is built, before typer does)."""
    from mm2latent_core.errors import Mm2LatentError

    try:
        return default_registry()
    except Mm2LatentError as e:
        console(stderr=True).print(f"[red]error:[/] {e}", soft_wrap=True)
        raise SystemExit(2) from None


def add_inference_commands(app: typer.Typer, modalities: ModalityRegistry | None = None) -> None:
    """Mount `generate` and `edit` on the main CLI app, a condition option per modality.

    Args:
        app: the typer app.
        modalities: the registry the condition options come from; None = default_registry()
            (the project's modalities and any MM2LATENT_MODALITIES plugin).
    """

    modalities = modalities or default_registry()
    app.command("generate")(with_condition_options(
        generate_command, {"conditions": condition_options(modalities, "", "file")},
        {"modalities": modalities}))
    app.command("edit")(with_condition_options(
        edit_command, {"targets": condition_options(modalities, "target_", "target"),
                       "own": condition_options(modalities, "", "own")},
        {"modalities": modalities}))
