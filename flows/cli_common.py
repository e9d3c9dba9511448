"""Shared pieces of the typer CLI: consoles and the user error -> exit code 2 rule."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console

from mm2latent_core.errors import Mm2LatentError
from storage.fs import as_user_error


def console(stderr: bool = False) -> Console:
    """A console built per call so that typer's CliRunner captures what it prints."""
    return Console(stderr=stderr, highlight=False)


def _fail(error: Exception) -> typer.Exit:
    console(stderr=True).print(f"[red]error:[/] {error}", soft_wrap=True)
    return typer.Exit(2)


@contextlib.contextmanager
def user_errors(*urls: str) -> Iterator[None]:
    """Turn an Mm2LatentError into one red line on stderr and exit code 2 (no traceback).

    Storage faults a user can fix (full disk, unreachable object store, missing credentials)
    get the same treatment, naming `urls` (the command's storage locations); anything else is
    a bug and keeps its traceback.
    """
    try:
        yield
    except Mm2LatentError as e:
        raise _fail(e) from None
    except Exception as e:
        error = as_user_error(e, [str(u) for u in urls if u])
        if error is None:
            raise
        raise _fail(error) from None
