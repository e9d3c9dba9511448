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
