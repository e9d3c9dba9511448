"""`mm2latent generate` and `mm2latent edit`: text(+spatial) to image, and real-image editing.

Two typer commands; flows/cli.py mounts them with `add_inference_commands(app)`.
Exit codes: 0 done, 2 a user error (bad mask / sketch / flame file, empty caption, missing
registered model) shown as one red line.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from flows.cli_common import Device, Models, Out, Preset, console, note_tiny, user_errors
from flows.cli_edit import edit_command, generate_rows
from mm2latent.training.registry import default_registry_url


def _condition(mask: Optional[str], sketch: Optional[str], flame: Optional[str]):
    """(modality, raw condition array) from exactly one of the three file options."""
    from mm2latent.conditions import load_condition
    from mm2latent_core.errors import ConfigError

    given = {m: url for m, url in (("mask", mask), ("sketch", sketch), ("flame", flame)) if url}
    if len(given) != 1:
        raise ConfigError("give exactly one spatial condition: --mask PNG, --sketch PNG or "
                          f"--flame NPY (got {', '.join('--' + m for m in given) or 'none'}).")
    modality, url = next(iter(given.items()))
    return modality, load_condition(modality, url)


def generate_command(
    text: Annotated[Optional[str], typer.Option(help="Caption, e.g. 'a smiling woman with blond hair'.")] = None,
    mask: Annotated[Optional[str], typer.Option(help="Label-id PNG (CelebAMask-HQ ids 0..18), or DATASET#INDEX.")] = None,
    sketch: Annotated[Optional[str], typer.Option(help="Sketch PNG, white (255) strokes on black (0), or DATASET#INDEX.")] = None,
    flame: Annotated[Optional[str], typer.Option(help=".npy of a 159-d 3DMM code (DECA), or DATASET#INDEX.")] = None,
    models: Models = "runs/tiny", preset: Preset = "tiny", out: Out = "out.png",
    n: Annotated[int, typer.Option("--n", min=1, help="Images to make (they differ in StyleGAN2 noise only).")] = 1,
    seed: Annotated[Optional[int], typer.Option(help="Noise seed; default: constant noise for --n 1, seed 0 otherwise.")] = None,
    psi: Annotated[float, typer.Option(help="Truncation psi (1 = none).")] = 1.0,
    device: Device = "cpu",
    rows: Annotated[Optional[str], typer.Option("--from", help="JSON-lines file, one {text, mask|sketch|flame, seed} per line: writes shards into --out (a directory).")] = None,
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
        modality, condition = _condition(mask, sketch, flame)
        model = load_inference(preset, default_registry_url(models), modality, device)
        noise_seed = seed if seed is not None or n == 1 else 0
        images = model.generate([text] * n, condition, truncation_psi=psi, noise_seed=noise_seed)
        write_png(out, images)
    note_tiny(preset)
    console().print(f"[green]wrote[/] {out} ({n} image(s), {images.shape[2]} px, {modality})")


def add_inference_commands(app: typer.Typer) -> None:
    """Mount `generate` and `edit` on the main CLI app."""
    app.command("generate")(generate_command)
    app.command("edit")(edit_command)
