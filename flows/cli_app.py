"""`mm2latent app`: serve the interactive editor (generate, edit with a beta slider, download).

The networks are loaded once here, before the server starts; requests never load them.
Needs the `app` extra (`pip install -e .[app]`: FastAPI and uvicorn).
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from flows.cli_common import Device, Models, Preset, console, note_tiny, user_errors

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def app_command(
    models: Models = "runs/tiny", preset: Preset = "tiny",
    host: Annotated[str, typer.Option(help="Address to listen on; anything but loopback exposes the app (no login) to your network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 7860,
    device: Device = "cpu",
    max_upload_mib: Annotated[float, typer.Option(help="Largest accepted upload, MiB.")] = 8.0,
    max_side: Annotated[int, typer.Option(help="Largest accepted image / mask side, pixels.")] = 2048,
    dataset: Annotated[Optional[str], typer.Option(help="synth-data dataset (e.g. data/tiny) whose samples the page offers.")] = None,
    registry: Annotated[Optional[str], typer.Option(help="Model registry URL; default <models>/registry.")] = None,
) -> None:
    """Serve the interactive editor on http://HOST:PORT (loopback by default)."""
    from mm2latent_core.errors import ConfigError
    from mm2latent.interactive.models import load_model_set
    from mm2latent.interactive.uploads import UploadLimits
    from mm2latent.training.registry import default_registry_url

    with user_errors():
        try:
            import uvicorn

            from flows.app.server import AppState, create_app
        except ImportError as e:
            raise ConfigError(f"`mm2latent app` needs the app extra ({e.name} is missing). Fix: "
                              "pip install -e '.[app]'.") from e
        model_set = load_model_set(preset, registry or default_registry_url(models), device)
        limits = UploadLimits(max_bytes=int(max_upload_mib * 2**20), max_side=max_side)
    note_tiny(preset)
    if host not in LOOPBACK:
        console(stderr=True).print(f"[yellow]warning:[/] --host {host} exposes the app, which has no "
                                   "login, to every machine that can reach this address.")
    console().print(f"serving {', '.join(model_set.models)} models on http://{host}:{port}", soft_wrap=True)
    uvicorn.run(create_app(AppState(model_set, limits, dataset=dataset)), host=host, port=port, log_level="warning")
