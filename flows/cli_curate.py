"""`mm2latent dataset curate SRC --out DST`: filters, a balance target and --n, from a YAML spec
and / or flags, into a new dataset in synth-data's layout.

Exit codes: 0 done, 2 a user error (bad spec, a mismatched --out, too few samples) as one line.
"""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from flows.cli_common import console, user_errors

FLAG_HELP = """Flags override the spec file's keys. Examples:
--range deca.yaw_deg=-30:30  --dedupe w:0.95  --balance glasses=mask.eyeglasses>=0.01
--balance yaw=deca.yaw_deg:-90,-15,15,90 (bins)"""


def _number(text: str, flag: str) -> float:
    from mm2latent_core.errors import ConfigError

    try:
        return float(text)
    except ValueError as e:
        raise ConfigError(f"{flag}: {text!r} is not a number.") from e


def parse_range(text: str) -> tuple[str, list[float]]:
    """'deca.yaw_deg=-30:30' -> ('deca.yaw_deg', [-30.0, 30.0])."""
    from mm2latent_core.errors import ConfigError

    column, _, bounds = text.partition("=")
    low, sep, high = bounds.partition(":")
    if not column or not sep:
        raise ConfigError(f"--range {text!r}: give COLUMN=LOW:HIGH, e.g. deca.yaw_deg=-30:30.")
    return column, [_number(low, "--range"), _number(high, "--range")]


def parse_dedupe(text: str) -> dict[str, Any]:
    """'w:0.95' -> {'vector': 'w', 'max_cosine': 0.95}."""
    from mm2latent_core.errors import ConfigError

    vector, sep, value = text.partition(":")
    if not sep:
        raise ConfigError(f"--dedupe {text!r}: give VECTOR:MAX_COSINE, e.g. w:0.95 or farl:0.9.")
    return {"vector": vector, "max_cosine": _number(value, "--dedupe")}


def parse_balance(text: str) -> tuple[str, dict[str, Any]]:
    """'[NAME=]COLUMN>=T' (binary) or '[NAME=]COLUMN:E0,E1,...' (bins) -> (name, attribute)."""
    from mm2latent_core.errors import ConfigError

    name, sep, rest = text.partition("=")
    if not sep or name.endswith(">"):  # no NAME= prefix: 'col>=t' split at its '>='
        name, rest = "", text
    if ">=" in rest:
        column, value = rest.split(">=", 1)
        body: dict[str, Any] = {"column": column, "threshold": _number(value, "--balance")}
    elif ":" in rest:
        column, edges = rest.split(":", 1)
        body = {"column": column, "bins": [_number(e, "--balance") for e in edges.split(",")]}
    else:
        raise ConfigError(f"--balance {text!r}: give [NAME=]COLUMN>=THRESHOLD or "
                          "[NAME=]COLUMN:E0,E1,..., e.g. glasses=mask.eyeglasses>=0.01.")
    return name or column.replace(".", "_"), body


def flag_overrides(n: Optional[int], seed: Optional[int], keep_failed: bool,
                   min_face_share: Optional[float], ranges: list[str], dedupe: Optional[str],
                   balance: list[str]) -> dict[tuple[str, ...], Any]:
    """Spec key paths -> values of the flags that were given."""
    out: dict[tuple[str, ...], Any] = {}
    if n is not None:
        out[("n",)] = n
    if seed is not None:
        out[("seed",)] = seed
    if keep_failed:
        out[("filters", "drop_failed")] = False
    if min_face_share is not None:
        out[("filters", "min_face_share")] = min_face_share
    for text in ranges:
        column, bounds = parse_range(text)
        out[("filters", "ranges", column)] = bounds
    if dedupe is not None:
        out[("filters", "near_duplicates")] = parse_dedupe(dedupe)
    for text in balance:
        name, body = parse_balance(text)
        out[("balance", "attributes", name)] = body
    return out


def curate_command(
    source: Annotated[str, typer.Argument(help="Source dataset root (its attributes computed).")],
    out: Annotated[str, typer.Option(help="Curated dataset root to write (a new dataset).")],
    spec: Annotated[Optional[str], typer.Option(help="YAML curation spec (see examples/curate-tiny.yaml).")] = None,
    n: Annotated[Optional[int], typer.Option("--n", help="Samples to select (default: all that pass; balanced: the most that keep the target exact).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of which samples a cell keeps (default 0).")] = None,
    keep_failed: Annotated[bool, typer.Option(help="Keep failed samples as failed rows (default: drop them).")] = False,
    min_face_share: Annotated[Optional[float], typer.Option(help="Drop samples whose mask.face share is below this.")] = None,
    ranges: Annotated[Optional[list[str]], typer.Option("--range", help="Keep COLUMN within LOW:HIGH, e.g. deca.yaw_deg=-30:30 (repeatable).")] = None,
    dedupe: Annotated[Optional[str], typer.Option(help="Drop near-duplicates: VECTOR:MAX_COSINE, e.g. w:0.95 (the lower index is kept).")] = None,
    balance: Annotated[Optional[list[str]], typer.Option(help="Balance over [NAME=]COLUMN>=T or [NAME=]COLUMN:E0,E1,... (repeatable; uniform over the joint cells).")] = None,
    samples_per_shard: Annotated[Optional[int], typer.Option(help="Samples per output shard (default: the source's).")] = None,
) -> None:
    """Curate a dataset: filters, a balance target and --n, into a new dataset (resumable: rerun it)."""
    from flows.cli_flow import run_flow
    from flows.curate import curate
    from mm2latent.curation.attributes_input import read_attribute_shards
    from mm2latent.curation.run import validate
    from mm2latent.curation.spec import parse_spec
    from storage.samples import read_bytes

    with user_errors(source, out):
        text = read_bytes(spec, "curation spec").decode() if spec else None
        overrides = flag_overrides(n, seed, keep_failed, min_face_share, ranges or [], dedupe,
                                   balance or [])
        resolved = parse_spec(text, overrides, spec or "flags")  # the one validation
        # Every user error (a mismatched --out, too few samples) fails here, before Prefect
        # starts; the flow repeats the selection (cheap next to copying the shards).
        validate(source, out, resolved, read_attribute_shards, samples_per_shard)
        # Copying reports no progress: a signal stops it at once (complete shards are kept).
        report = run_flow(lambda _: curate(source=source, out=out, spec=resolved.to_json(),
                                           samples_per_shard=samples_per_shard),
                          between_batches=False)
    removed = ", ".join(f"{k} {v}" for k, v in report.removed.items() if v) or "nothing"
    console().print(f"[bold]{report.out}[/]: {report.selected} of {report.source_rows} samples "
                    f"selected (filters removed: {removed}); report {report.out}/curation.png",
                    soft_wrap=True)
