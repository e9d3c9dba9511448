"""Benchmark of synth-data: pipeline efficiency and peak RSS vs n_samples (`tiny`), or seconds
per sample per stage on the paper's architectures (`--preset ffhq-arch`).

Usage (from the repository root):
    python -m benchmarks.synth_data                      # n 2048 (512/shard), 2 repeats, RSS at 128 and 512
    python -m benchmarks.synth_data --n 128 --rss-n 32 --rss-path library --threads 1
    python -m benchmarks.synth_data --n 512 --samples-per-shard 128 --task-runner dask --rss-n 0
    python -m benchmarks.synth_data --preset ffhq-arch   # batch 1, 4, 8, 16; see benchmarks/synth_stages.py
    python -m benchmarks.synth_data --preset ffhq-arch --device cuda   # the same on a GPU

With `--preset ffhq-arch` the rest of this text does not apply: benchmarks/synth_stages.py says
what is measured. Below, the `tiny` mode.

What it measures, all in this process unless noted:
- bare: the networks' forward passes only (mapping, synthesis, face parser, DECA E_flame on the
  DECA crop, FaRL image tower) on the same batches of the same samples, models built once.
- library: run.plan + run.run_shard for every shard, which adds latent sampling, per-shard model
  construction (the flow's tasks share one build), sketches, PNG/npy encoding, tar, parquet.
- flow: the `synth-data` Prefect flow under prefect_test_harness with a temporary PREFECT_HOME
  (the harness start-up is not timed).
- dask (with `--task-runner dask`): the same flow with task_runner="dask" on a LocalCluster of
  `--dask-workers` processes (one thread each); the cluster's start-up is timed, as a user pays it.
Pipeline efficiency = pipeline samples/s / bare samples/s (target >= 0.85). Fixed costs (Prefect
task bookkeeping, about 1 s per run; model builds) do not shrink with n, and `tiny` does 256
samples of real work in under a second, so measure the steady state with shards of hundreds. The
bare passes are plain batched forward passes; the pipeline runs them under
mm2latent.batching.invariant_forward for batch invariance, and that cost counts against its
efficiency.
Peak RSS: each of N and 4N runs in a fresh subprocess, which reports the highest RSS sampled
(every 20 ms) during the run itself and its lifetime ru_maxrss (imports and the Prefect harness
included); neither includes this process's models. The machine may be shared: the load average is
printed before and after; compare ratios measured in the same run. On a loaded 2-core machine
two OpenMP threads can be many times slower than one for these small networks (threads spin at
barriers while other processes hold the cores): `--threads 1` shows whether that is happening.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from benchmarks.generator import PeakRss
from benchmarks.prefect_harness import harness, isolate_prefect

if TYPE_CHECKING:  # the library is imported after Prefect's home is set (see below)
    from mm2latent.synth.run import SynthSummary

MODALITIES = ("mask", "sketch", "flame", "farl")


def _params(args: argparse.Namespace, n: int, out: str) -> dict:
    """synth-data parameters of one benchmark run."""
    return dict(preset="tiny", n_samples=n, samples_per_shard=args.samples_per_shard,
                batch_size=args.batch_size, seed=0, out=out, modalities=list(MODALITIES))


@torch.inference_mode()
def bare_forward(n: int, batch_size: int) -> float:
    """Seconds for the networks' forward passes over samples 0..n-1 (models built untimed)."""
    from mm2latent.models.deca import ffhq_crop_for_deca
    from mm2latent.presets import get_preset
    from mm2latent.synth import stages
    from mm2latent.synth.models import build_synth_models

    models = build_synth_models(get_preset("tiny"), MODALITIES)
    g = models.generator
    batches = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
    latents = [stages.latents(0, b, g.cfg.z_dim) for b in batches]  # (B, z_dim) each

    def one(z: torch.Tensor) -> None:
        ws = g.mapping(z, 0.7)  # (B, num_ws, w_dim)
        images = g.synthesis(ws, noise_mode="const")  # (B, 3, R, R) in about [-1, 1]
        images01 = (images * 127.5 + 128).clamp(0, 255).to(torch.uint8).float() / 255  # (B, 3, R, R)
        nets = models.annotators  # modality -> its network
        nets["mask"].parse(images01)
        nets["flame"].flame159(ffhq_crop_for_deca(images01))
        nets["farl"].encode_image(images01)

    one(latents[0])  # warm-up: first calls allocate and pick kernels
    start = time.perf_counter()
    for z in latents:
        one(z)
    return time.perf_counter() - start


def library_run(args: argparse.Namespace, n: int, out: str) -> tuple[float, SynthSummary]:
    """Seconds for plan + run_shard over every shard into `out`, and the run's summary."""
    from mm2latent.synth import run
    from mm2latent.synth.params import parse_params

    params = parse_params(**_params(args, n, out))
    start = time.perf_counter()
    for shard in run.plan(params):
        run.run_shard(params, shard)
    seconds = time.perf_counter() - start
    return seconds, run.summarize(params)


def flow_run(args: argparse.Namespace, n: int, out: str,
             task_runner: str = "threads") -> tuple[float, SynthSummary]:
    """Seconds for the synth-data flow (harness already started by the caller) and its summary."""
    from flows.synth_data import synth_data
    from mm2latent.synth.params import parse_params

    workers = args.dask_workers if task_runner == "dask" else 1
    params = parse_params(**_params(args, n, out), max_workers=workers)  # as the CLI does
    start = time.perf_counter()
    summary = synth_data(params, task_runner=task_runner)
    return time.perf_counter() - start, summary


def _child(args: argparse.Namespace) -> None:
    """Subprocess mode: one run of `args.child` at n = args.n; print seconds and peak RSS.

    Two peaks: the process's lifetime ru_maxrss (imports, harness start-up included) and the
    highest RSS sampled while the run itself executes, which is what grows if a run leaks.
    """
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
        out = os.path.join(tmp, "data")
        with contextlib.ExitStack() as stack:
            if args.child == "flow":
                stack.enter_context(harness())
            with PeakRss() as sampler:
                run_fn = flow_run if args.child == "flow" else library_run
                seconds, summary = run_fn(args, args.n, out)
    lifetime_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"n": args.n, "seconds": seconds, "ok": summary.ok,
                      "peak_rss_kib": lifetime_kib, "run_peak_rss_bytes": sampler.peak}))


def measure_rss(args: argparse.Namespace, n: int) -> dict:
    """Run one synth-data run of size n in a fresh interpreter; its seconds and peak RSS."""
    command = [sys.executable, "-m", "benchmarks.synth_data", "--child", args.rss_path, "--n", str(n),
               "--samples-per-shard", str(args.samples_per_shard), "--batch-size", str(args.batch_size)]
    done = subprocess.run(command, cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _report(times: dict[str, list[float]], n: int) -> None:
    """One line per path: best and median seconds, samples/s, efficiency vs bare (best / median)."""
    bare_best, bare_median = min(times["bare"]), statistics.median(times["bare"])
    for name, seconds in times.items():
        best, median = min(seconds), statistics.median(seconds)
        line = (f"{name:8s} {n:5d} samples  best {best:7.2f} s ({n / best:6.2f} samples/s)  "
                f"median {median:7.2f} s ({n / median:6.2f} samples/s)")
        if name != "bare":
            line += f"  efficiency best {bare_best / best:.3f} median {bare_median / median:.3f}"
        print(line)


def _stage_line(name: str, durations: dict[str, float], seconds: float) -> str:
    """Per-stage seconds recorded in the shard stats, and the time outside every stage."""
    parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(durations.items()))
    return f"  last {name} run, stages (s): {parts}; outside stages {seconds - sum(durations.values()):.2f}"


def throughput(args: argparse.Namespace) -> None:
    """Interleave bare, library and flow runs `args.repeats` times so load hits them alike."""
    paths = ["library", "flow"] if args.paths == "both" else [args.paths]
    paths += ["dask"] if args.task_runner == "dask" else []
    times: dict[str, list[float]] = {"bare": [], **{p: [] for p in paths}}
    last: dict[str, tuple[float, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp, contextlib.ExitStack() as stack:
        if "flow" in paths or "dask" in paths:
            stack.enter_context(harness())
        for repeat in range(args.repeats):
            times["bare"].append(bare_forward(args.n, args.batch_size))
            for path in paths:
                out = os.path.join(tmp, f"{path}-{repeat}")  # fresh root: nothing to skip
                if path == "library":
                    last[path] = library_run(args, args.n, out)
                else:
                    last[path] = flow_run(args, args.n, out, "dask" if path == "dask" else "threads")
                times[path].append(last[path][0])
    _report(times, args.n)
    for path, (seconds, summary) in last.items():
        print(_stage_line(path, summary.durations_s, seconds))


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, run the measurements, print the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2048, help="samples for the throughput runs")
    parser.add_argument("--samples-per-shard", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats of each path")
    parser.add_argument("--paths", choices=("library", "flow", "both"), default="both")
    parser.add_argument("--rss-n", type=int, default=128, help="N for the RSS runs (also 4N); 0 = skip")
    parser.add_argument("--rss-path", choices=("library", "flow"), default="flow")
    parser.add_argument("--threads", type=int, default=0,
                        help="OMP_NUM_THREADS for every path (re-executes this script); 0 = inherit")
    parser.add_argument("--task-runner", choices=("threads", "dask"), default="threads",
                        help="dask: also time the flow on a LocalCluster (the 'dask' line)")
    parser.add_argument("--dask-workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument("--preset", choices=("tiny", "ffhq-arch"), default="tiny",
                        help="ffhq-arch: stage table on the paper's architectures (seeded weights)")
    parser.add_argument("--min-shard", type=int, default=8,
                        help="ffhq-arch: samples per shard at least (whole batches)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 16],
                        help="batch sizes of the ffhq-arch stage table")
    parser.add_argument("--device", default="cpu", help="torch device of the ffhq-arch networks")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="ffhq-arch: wall time, or this process's CPU time (shared machines)")
    parser.add_argument("--child", choices=("library", "flow"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads and os.environ.get("OMP_NUM_THREADS") != str(args.threads):
        # torch reads the thread count when it is imported, and the flow's worker threads start
        # their own OpenMP teams from the environment, so set it before a fresh interpreter.
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        argv = sys.argv[1:] if argv is None else argv
        os.execv(sys.executable, [sys.executable, "-m", "benchmarks.synth_data", *argv])
    isolate_prefect(tempfile.mkdtemp(prefix="synth-bench-prefect-"))
    # `kill` (SIGTERM) unwinds like Ctrl-C, so the Prefect test harness stops its server
    # instead of leaving it running without a parent.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.child:
        _child(args)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    if args.preset == "ffhq-arch":
        from benchmarks.synth_stages import run_stages

        run_stages(args)
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
        return
    if args.repeats > 0:
        throughput(args)
    print(f"load average after the throughput runs {os.getloadavg()[0]:.2f}")
    if args.rss_n > 0:
        for n in (args.rss_n, 4 * args.rss_n):
            result = measure_rss(args, n)
            print(f"peak RSS ({args.rss_path}, fresh process) n={n:5d}: during the run "
                  f"{result['run_peak_rss_bytes'] / 2**20:8.1f} MiB, process lifetime "
                  f"{result['peak_rss_kib'] / 1024:8.1f} MiB  ({result['seconds']:.1f} s)")
        print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
