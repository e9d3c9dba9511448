"""Shared pieces of the typer CLI: consoles, the user error -> exit code 2 rule, the progress
bar, the tiny-preset note and the options several commands declare alike.

Every command module imports these from here (never from flows/cli.py, which imports the
command modules), so the CLI's imports form no circle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn)

from mm2latent_core.errors import Mm2LatentError
from storage.fs import as_user_error


def console(stderr: bool = False) -> Console:
    """A console built per call so that typer's CliRunner captures what it prints."""
    return Console(stderr=stderr, highlight=False)


def _os_error_line(error: OSError, urls: tuple[str, ...]) -> str:
    """One line for an OSError no earlier check caught: the file, the system's reason, a fix."""
    where = error.filename or ", ".join(str(u) for u in urls if u) or "a file"
    reason = error.strerror or str(error) or type(error).__name__
    return (f"{where}: {reason} ({type(error).__name__}). Fix: check that the path exists, is "
            "of the right kind (file or directory) and can be read or written, then re-run.")


def _fail(error: Exception | str) -> typer.Exit:
    console(stderr=True).print(f"[red]error:[/] {error}", soft_wrap=True)
    return typer.Exit(2)


@contextlib.contextmanager
def user_errors(*urls: str) -> Iterator[None]:
    """Turn an Mm2LatentError into one red line on stderr and exit code 2 (no traceback).

    Storage faults a user can fix (full disk, unreachable object store, missing credentials)
    get the same treatment, naming `urls` (the command's storage locations). Any other OSError
    still becomes one line, as a last resort (the commands check their paths first, so this
    names what those checks could not foresee); anything else is a bug and keeps its traceback.
    """
    try:
        yield
    except Mm2LatentError as e:
        raise _fail(e) from None
    except Exception as e:
        error = as_user_error(e, [str(u) for u in urls if u])
        if error is not None:
            raise _fail(error) from None
        if isinstance(e, OSError):
            raise _fail(_os_error_line(e, urls)) from None
        raise


Models = Annotated[str, typer.Option(help="The --out directory of `mm2latent train` (e.g. runs/tiny); its registry is <models>/registry.")]
Preset = Annotated[str, typer.Option(help="Preset the models were trained with: tiny (not faces), ffhq, or ffhq-official (the authors' released mask/sketch models; --models is then unused).")]
Out = Annotated[str, typer.Option(help="Output PNG (several images are placed side by side).")]
Device = Annotated[str, typer.Option(help="torch device.")]

NOT_FACES = ("[yellow]Note:[/] preset 'tiny' runs random-weight networks: its images are NOT "
             "faces. Use --preset ffhq (official weights) for the paper's setup.")


def note_tiny(preset: str) -> None:
    """Remind on stderr that the tiny preset's images are not faces."""
    if preset == "tiny":
        console(stderr=True).print(NOT_FACES)


def progress_bar() -> Progress:
    """A rich bar with count, rate (the task's `rate` field) and ETA, drawn on stderr."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=console(stderr=True),
                    redirect_stderr=True)
