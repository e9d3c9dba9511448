"""`mm2latent weights ...`: list, fetch and verify the pretrained files in the cache.

A typer sub-app; flows/cli.py mounts it with `app.add_typer(weights_app, name="weights")`.
Exit codes: 0 fine, 1 a file is bad or a named file is missing (verify), or still missing
(fetch of a manual entry),
2 a user error (unknown name, failed download, integrity failure) shown as one red line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                           TimeRemainingColumn, TransferSpeedColumn)
from rich.table import Table

from flows.cli_common import console, user_errors
from mm2latent import weights as registry
from storage.download import DownloadCfg

weights_app = typer.Typer(
    help="List, fetch and verify pretrained weights (nothing else downloads them).",
    no_args_is_help=True,
)

CacheDirOpt = Annotated[
    Optional[Path],
    typer.Option("--cache-dir", help="Cache directory (default: $MM2LATENT_CACHE, else "
                 "$XDG_CACHE_HOME/mm2latent, else ~/.cache/mm2latent)."),
]

# How a VerifyResult.status reads in `list` (verified?) and in `verify` (status).
_LIST_STATUS = {"ok": "[green]yes[/]", "unverified": "[yellow]not yet[/]",
                "mismatch": "[red]MISMATCH[/]", "missing": "-"}
_VERIFY_STATUS = {"ok": "[green]ok[/]", "unverified": "[yellow]unverified[/]",
                  "mismatch": "[red]MISMATCH[/]", "missing": "missing"}


def _human_size(size: int | None) -> str:
    """Format a byte count for the table ('?' when unknown)."""
    if size is None:
        return "?"
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


@weights_app.command("list")
def list_weights(cache_dir: CacheDirOpt = None) -> None:
    """Show every registered file, whether it is cached and whether it was verified."""
    with user_errors():
        root = registry.resolve_cache_dir(cache_dir)
        table = Table(title=f"weights in {root}")
        for column in ("name", "file", "format", "size", "cached?", "verified?"):
            table.add_column(column, no_wrap=column == "name")
        for spec in registry.list_specs():
            # 'quick' never hashes, so listing stays instant even with GBs in the cache.
            result = registry.verify(spec.name, root, mode="quick", record_unknown=False)
            cached = result.status != "missing"
            size = result.found_size if cached else spec.size
            fmt = spec.format + (" (manual)" if spec.manual else "")
            table.add_row(spec.name, spec.filename, fmt, _human_size(size),
                          "yes" if cached else "no", _LIST_STATUS[result.status])
        console().print(table)


def _progress_bar() -> Progress:
    """Return the rich progress bar used for downloads."""
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=console())


@weights_app.command("fetch")
def fetch_weights(
    names: Annotated[list[str], typer.Argument(help="Registered names, e.g. farl.ep16.")],
    cache_dir: CacheDirOpt = None,
    force: Annotated[bool, typer.Option(help="Download again even if a good copy exists.")]
    = False,
    retries: Annotated[int, typer.Option(help="Extra attempts after a failed transfer.")] = 3,
    timeout: Annotated[float, typer.Option(help="Seconds without data before giving up.")]
    = 30.0,
) -> None:
    """Download files into the cache (resumable, verified); manual entries print instructions."""
    config = DownloadCfg(timeout=timeout, retries=retries)
    still_missing = []
    with user_errors():
        root = registry.resolve_cache_dir(cache_dir)
        specs = [registry.get_spec(name) for name in names]  # fail on a typo before any I/O
        with _progress_bar() as bar:
            for spec in specs:
                task = bar.add_task(spec.name, total=spec.size)

                def on_progress(done: int, total: int | None, task=task) -> None:
                    bar.update(task, completed=done, total=total)

                try:
                    path = registry.fetch(spec.name, root, force=force, progress=on_progress,
                                          config=config)
                except registry.ManualDownloadRequired as e:
                    bar.remove_task(task)
                    bar.console.print(f"[yellow]manual download:[/] {e}", soft_wrap=True)
                    still_missing.append(spec.name)
                    continue
                bar.console.print(f"[green]ok[/] {spec.name} -> {path}")
    if still_missing:
        raise typer.Exit(1)


@weights_app.command("verify")
def verify_weights(
    names: Annotated[Optional[list[str]], typer.Argument(help="Names; default: all.")] = None,
    cache_dir: CacheDirOpt = None,
    reset: Annotated[bool, typer.Option(
        help="Forget the recorded digest of NAMES first and record the current file's.")]
    = False,
) -> None:
    """Rehash cached files in full; exit 1 when any does not match its digest, or a named one is missing."""
    with user_errors():
        root = registry.resolve_cache_dir(cache_dir)
        if reset and not names:
            raise typer.BadParameter("--reset needs explicit NAMES", param_hint="NAMES")
        specs = [registry.get_spec(n) for n in names] if names else registry.list_specs()
        table = Table(title=f"verify {root}")
        for column in ("name", "status", "detail"):
            table.add_column(column, no_wrap=column == "name")
        fixes, missing = [], []
        for spec in specs:
            if reset:
                registry.forget_recorded(spec.name, root)
            result = registry.verify(spec.name, root, mode="full")
            if result.status == "mismatch":
                fixes.append(registry.mismatch_message(result, root))
            elif result.status == "missing" and names:  # asked for by name: absence is a failure
                missing.append(spec.name)
            table.add_row(spec.name, _VERIFY_STATUS[result.status],
                          result.message)
        console().print(table)
    if fixes:
        err = console(stderr=True)
        for fix in fixes:
            err.print(f"[red]mismatch:[/] {fix}", soft_wrap=True)
    if missing:
        console(stderr=True).print(
            f"[red]missing:[/] {', '.join(missing)} not in {root}. Fix: `mm2latent weights fetch "
            f"{' '.join(missing)}` (manual entries print where to put the file).", soft_wrap=True)
    if fixes or missing:
        raise typer.Exit(1)
