"""`mm2latent generate` and `mm2latent edit`: text(+spatial) to image, and real-image editing.

Two typer commands; flows/cli.py mounts them with `add_inference_commands(app)`.
Exit codes: 0 done, 2 a user error (bad mask / sketch / flame file, empty caption, missing
registered model) shown as one red line.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from flows.cli_common import console, user_errors
from mm2latent.training.registry import default_registry_url

Models = Annotated[str, typer.Option(help="The --out directory of `mm2latent train` (e.g. runs/tiny); its registry is <models>/registry.")]
Preset = Annotated[str, typer.Option(help="Preset the models were trained with: tiny (not faces), ffhq, or ffhq-official (the authors' released mask/sketch models; --models is then unused).")]
Out = Annotated[str, typer.Option(help="Output PNG (several images are placed side by side).")]
Device = Annotated[str, typer.Option(help="torch device.")]


def _condition(mask: Optional[str], sketch: Optional[str], flame: Optional[str]):
    """(modality, raw condition array) from exactly one of the three file options."""
    from mm2latent.errors import ConfigError
    from mm2latent.inference import read_flame, read_mask, read_sketch

    given = {m: url for m, url in (("mask", mask), ("sketch", sketch), ("flame", flame)) if url}
    if len(given) != 1:
        raise ConfigError("give exactly one spatial condition: --mask PNG, --sketch PNG or "
                          f"--flame NPY (got {', '.join('--' + m for m in given) or 'none'}).")
    modality, url = next(iter(given.items()))
    reader = {"mask": read_mask, "sketch": read_sketch, "flame": read_flame}[modality]
    return modality, reader(url)


def _note_tiny(preset: str) -> None:
    from flows.cli import NOT_FACES  # imported here: flows.cli imports this module

    if preset == "tiny":
        console(stderr=True).print(NOT_FACES)


def generate_command(
    text: Annotated[str, typer.Option(help="Caption, e.g. 'a smiling woman with blond hair'.")],
    mask: Annotated[Optional[str], typer.Option(help="Label-id PNG (CelebAMask-HQ ids 0..18).")] = None,
    sketch: Annotated[Optional[str], typer.Option(help="Sketch PNG, white (255) strokes on black (0).")] = None,
    flame: Annotated[Optional[str], typer.Option(help=".npy of a 159-d 3DMM code (DECA).")] = None,
    models: Models = "runs/tiny", preset: Preset = "tiny", out: Out = "out.png",
    n: Annotated[int, typer.Option("--n", min=1, help="Images to make (they differ in StyleGAN2 noise only).")] = 1,
    seed: Annotated[Optional[int], typer.Option(help="Noise seed; default: constant noise for --n 1, seed 0 otherwise.")] = None,
    psi: Annotated[float, typer.Option(help="Truncation psi (1 = none).")] = 1.0,
    device: Device = "cpu",
) -> None:
    """Generate images from a caption and a mask, sketch or 3DMM code."""
    from mm2latent.inference import load_inference, write_png

    with user_errors():
        modality, condition = _condition(mask, sketch, flame)
        model = load_inference(preset, default_registry_url(models), modality, device)
        noise_seed = seed if seed is not None or n == 1 else 0
        images = model.generate([text] * n, condition, truncation_psi=psi, noise_seed=noise_seed)
        write_png(out, images)
    _note_tiny(preset)
    console().print(f"[green]wrote[/] {out} ({n} image(s), {images.shape[2]} px, {modality})")


def edit_command(
    image: Annotated[str, typer.Argument(help="FFHQ-aligned RGB image to edit.")],
    target: Annotated[str, typer.Option(help="Description of the result, e.g. 'a smiling face'.")],
    pivot: Annotated[str, typer.Option(help="Neutral description, e.g. 'a face'.")] = "a face",
    beta: Annotated[float, typer.Option(help="Edit strength (0 = e4e reconstruction).")] = 1.0,
    modality: Annotated[str, typer.Option(help="MappingNet to use: mask, sketch or flame.")] = "mask",
    mask: Annotated[Optional[str], typer.Option(help="Use this mask instead of parsing the image.")] = None,
    sketch: Annotated[Optional[str], typer.Option(help="Use this sketch instead of the image's edges.")] = None,
    flame: Annotated[Optional[str], typer.Option(help="Use this 3DMM code instead of the image's.")] = None,
    models: Models = "runs/tiny", preset: Preset = "tiny", out: Out = "edited.png",
    device: Device = "cpu",
) -> None:
    """Edit a real image with text: e4e inversion, then w+ + beta * MappingNet direction."""
    from mm2latent.errors import ConfigError
    from mm2latent.inference import load_inference, read_image, write_png

    with user_errors():
        condition = None
        if mask or sketch or flame:
            given, condition = _condition(mask, sketch, flame)
            if given != modality:
                raise ConfigError(f"--{given} was given but --modality is {modality}; make them agree.")
        model = load_inference(preset, default_registry_url(models), modality, device)
        images = model.edit(read_image(image), target, pivot, beta, spatial=condition)
        write_png(out, images)
    _note_tiny(preset)
    console().print(f"[green]wrote[/] {out} (beta {beta}, {modality} MappingNet)")


def add_inference_commands(app: typer.Typer) -> None:
    """Mount `generate` and `edit` on the main CLI app."""
    app.command("generate")(generate_command)
    app.command("edit")(edit_command)
