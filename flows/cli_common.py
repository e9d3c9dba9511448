"""Shared pieces of the typer CLI: consoles and the Mm2LatentError -> exit code 2 rule."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console

from mm2latent.errors import Mm2LatentError


def console(stderr: bool = False) -> Console:
    """A console built per call so that typer's CliRunner captures what it prints."""
    return Console(stderr=stderr, highlight=False)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn an Mm2LatentError into one red line on stderr and exit code 2 (no traceback)."""
    try:
        yield
    except Mm2LatentError as e:
        console(stderr=True).print(f"[red]error:[/] {e}", soft_wrap=True)
        raise typer.Exit(2) from None
