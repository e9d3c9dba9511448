"""What a CLI command costs before its work starts: quiet, and beside two CPU-bound processes.

Usage: python -m benchmarks.cli_overhead [--repeats 3] [--hogs 2] [--back-to-back 20]

Runs `mm2latent synth-data --n 8`, `train mapping --epochs 1` and `generate` (tiny preset) as a
user would, each in a fresh process, and measures the wall time from process start to the
flow's first log line ("Beginning flow run": imports, argument checks, the temporary Prefect
server's start) and to the end of the command. Then the parts of that fixed cost: importing the
CLI, a temporary server's first start on an empty PREFECT_HOME (it creates and migrates the
SQLite database) and a later start on the same, migrated, PREFECT_HOME. Each measurement is
repeated (median shown), first on a quiet machine, then with `--hogs` busy-looping processes
that this script starts and stops. A shared machine is never truly quiet: compare rows of one
run, not numbers across machines.

`--back-to-back N` then runs `train mapping --epochs 1` N times in a row beside the hogs, each
in a fresh process on its own fresh PREFECT_HOME (every start migrates a new database, the
slowest case), and reports how many succeeded, with their times: a command must never fail
because the machine is busy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CLI = [sys.executable, "-c", "from flows.main import main; main()"]
FLOW_STARTED = "Beginning flow run"


@contextmanager
def cpu_hogs(count: int) -> Iterator[None]:
    """`count` processes spinning on a core each; stopped (by PID) when the block ends."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def _env(prefect_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(prefect_home), PREFECT_LOGGING_LEVEL="INFO",
               PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PYTHONPATH=os.pathsep.join(filter(None, [str(Path.cwd()), env.get("PYTHONPATH")])))
    return env


def timed_command(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float | None, float]:
    """(seconds to the flow's first log line or None, seconds to exit) of `mm2latent args`."""
    start = time.perf_counter()
    proc = subprocess.Popen([*CLI, *args], env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    first, tail = None, []
    for line in proc.stderr:
        tail = (tail + [line])[-20:]
        if first is None and FLOW_STARTED in line:
            first = time.perf_counter() - start
    if proc.wait() != 0:
        raise SystemExit(f"mm2latent {' '.join(args)} failed:\n{''.join(tail)}")
    return first, time.perf_counter() - start


def timed_python(code: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return time.perf_counter() - start


_START_SERVER = ("from flows.prefect_runtime import tied_prefect_server\n"
                 "with tied_prefect_server(): pass")


def measure(work: Path, repeats: int) -> dict[str, tuple[float | None, float]]:
    """name -> (median seconds to the first flow log line or None, median seconds in all)."""
    work.mkdir(parents=True)
    env = _env(work / "prefect")
    data, runs = work / "data", work / "runs"
    commands = {
        "synth-data --n 8": ["synth-data", "--n", "8", "--samples-per-shard", "8", "--out",
                             str(data), "--overwrite"],
        "train mapping --epochs 1": ["train", "mapping", "--dataset", str(data), "--out",
                                     str(runs), "--epochs", "1", "--modality", "flame"],
        "generate": ["generate", "--text", "a smiling face", "--flame", str(work / "flame.npy"),
                     "--models", str(runs), "--out", str(work / "out.png")],
    }
    rows: dict[str, list[tuple[float | None, float]]] = {}
    timed_python(_START_SERVER, env)  # migrates env's PREFECT_HOME: the "migrated" rows' state
    for i in range(repeats):
        fresh = work / f"fresh-{i}"  # an empty PREFECT_HOME: the first start migrates it
        rows.setdefault("server start, empty PREFECT_HOME", []).append(
            (None, timed_python(_START_SERVER, _env(fresh))))
        rows.setdefault("server start, migrated PREFECT_HOME", []).append(
            (None, timed_python(_START_SERVER, env)))
        rows.setdefault("import flows.cli", []).append(
            (None, timed_python("import flows.cli", env)))
        for name, args in commands.items():
            if name == "generate" and not (work / "flame.npy").exists():
                _export_flame(data, work, env)
            if name == "train mapping --epochs 1":
                _clear(runs)
                # A new user's first command: its server migrates an empty PREFECT_HOME.
                rows.setdefault(f"{name}, empty PREFECT_HOME", []).append(
                    timed_command(args, _env(work / f"first-{i}"), work))
                _clear(runs)
            rows.setdefault(name, []).append(timed_command(args, env, work))
    return {name: (_median([r[0] for r in runs_]), _median([r[1] for r in runs_]))
            for name, runs_ in rows.items()}


def _export_flame(data: Path, work: Path, env: dict[str, str]) -> None:
    subprocess.run([*CLI, "dataset", "export", str(data), "0", "--out", str(work / "sample")],
                   env=env, check=True, capture_output=True)
    (work / "flame.npy").write_bytes((work / "sample" / "flame.npy").read_bytes())


def _clear(runs: Path) -> None:
    """Remove earlier training runs: each timed `train mapping` starts a new run."""
    shutil.rmtree(runs, ignore_errors=True)


def back_to_back(work: Path, count: int) -> tuple[int, list[float], list[str]]:
    """(successes, seconds of each run, failure tails) of `count` train mapping runs in a row."""
    work.mkdir(parents=True)
    data, runs = work / "data", work / "runs"
    subprocess.run([*CLI, "synth-data", "--n", "8", "--samples-per-shard", "8", "--out",
                    str(data)], env=_env(work / "prefect-synth"), cwd=work, check=True,
                   capture_output=True)
    ok, seconds, failures = 0, [], []
    for i in range(count):
        _clear(runs)
        start = time.perf_counter()
        done = subprocess.run([*CLI, "train", "mapping", "--dataset", str(data), "--out",
                               str(runs), "--epochs", "1", "--modality", "flame"],
                              env=_env(work / f"prefect-{i}"), cwd=work, capture_output=True,
                              text=True)
        seconds.append(time.perf_counter() - start)
        if done.returncode == 0:
            ok += 1
        else:
            failures.append(f"run {i}: exit {done.returncode}: {done.stderr[-1500:]}")
        print(f"back-to-back run {i + 1}/{count}: exit {done.returncode} in {seconds[-1]:.1f} s",
              flush=True)
    return ok, seconds, failures


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:6.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hogs", type=int, default=2, help="CPU-bound processes beside it")
    parser.add_argument("--back-to-back", type=int, default=0,
                        help="then run train mapping this many times in a row beside the hogs")
    parser.add_argument("--json", type=Path, help="also write the table here")
    args = parser.parse_args()
    results, loop = {}, None
    with tempfile.TemporaryDirectory(prefix="mm2latent-overhead-") as tmp:
        if args.repeats:
            results["quiet"] = measure(Path(tmp) / "quiet", args.repeats)
        with cpu_hogs(args.hogs):
            if args.repeats:
                results[f"{args.hogs} CPU hogs"] = measure(Path(tmp) / "hogs", args.repeats)
            if args.back_to_back:
                loop = back_to_back(Path(tmp) / "loop", args.back_to_back)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs); "
          f"median of {args.repeats}; seconds")
    print(f"{'':48s} {'mode':>12s} {'to flow log':>12s} {'whole':>8s}")
    for mode, table in results.items():
        for name, (first, whole) in table.items():
            print(f"{name:48s} {mode:>12s} {_cell(first):>12s} {_cell(whole):>8s}")
    if loop is not None:
        ok, seconds, failures = loop
        print(f"train mapping --epochs 1 back to back beside {args.hogs} CPU hogs: {ok} of "
              f"{len(seconds)} succeeded; seconds min {min(seconds):.1f}, median "
              f"{statistics.median(seconds):.1f}, max {max(seconds):.1f}")
        for failure in failures:
            print(failure)
    if args.json:
        args.json.write_text(json.dumps({"table": results, "back_to_back": loop}, indent=2))


if __name__ == "__main__":
    main()
