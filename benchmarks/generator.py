"""CPU benchmark of the StyleGAN2 generator: ms per image and peak RSS, optionally vs NVIDIA.

Usage:
    python -m benchmarks.generator                       # ours only, 256 and 1024 px, batch 1 and 4
    PYTHONPATH=/path/to/stylegan2-ada-pytorch \
        python -m benchmarks.generator --reference nvidia

`--reference nvidia` imports `training.networks.Generator` from the official
NVlabs/stylegan2-ada-pytorch code, which must be importable from PYTHONPATH (point it at
your own checkout; this script never edits sys.path). The reference is built in the same
process with the same config, our random weights are loaded into it with a strict
`load_state_dict`, and both are timed on the same ws under `torch.inference_mode()` with
float32 and the same thread count. On the CPU the official code runs its reference ops.
Each timing is the median of `--runs` runs after `--warmup` runs, the models taking turns
so that load from other processes hits them alike. Peak RSS is the highest resident set
size seen by a 20 ms sampler during one extra run of that model (process RSS, so it
includes every model's weights). The images are compared too (max abs difference).
Each row of ours also shows its time over the FLOP bound: 2 x the synthesis multiply-adds
(`synthesis_macs`, 75.4 G at 1024 px) / `--peak-gflops` (default 377 GFLOP/s, 2 Zen5 cores
with AVX-512 FMA, which puts 1024 px at about 0.40 s per image).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import threading
import time
from collections.abc import Callable

import psutil
import torch

from mm2latent.models.stylegan2 import Generator, GeneratorCfg
from mm2latent.seeding import seeded_init


class PeakRss:
    """Context manager sampling this process's RSS in a thread; `.peak` in bytes."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.peak = 0
        self._stop = threading.Event()
        self._proc = psutil.Process()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakRss:
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def peak_rss(fn: Callable[[], torch.Tensor]) -> tuple[int, torch.Tensor]:
    """Peak RSS in bytes seen while running fn() once, and its output."""
    with PeakRss() as rss:
        out = fn()
    return rss.peak, out


def time_interleaved(fns: dict[str, Callable[[], torch.Tensor]], runs: int, warmup: int
                     ) -> dict[str, float]:
    """Median ms of each fn, running them in turn so that machine load hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append((time.perf_counter() - t0) * 1000.0)
    return {name: statistics.median(t) for name, t in times.items()}


def synthesis_macs(cfg: GeneratorCfg) -> int:
    """Multiply-adds of one image through the synthesis network (convs, blur, torgb, skip path)."""
    total = 0
    for r in cfg.block_resolutions():
        o = cfg.channels(r)
        if r > 4:
            i = cfg.channels(r // 2)
            total += i * o * 9 * (r // 2) ** 2  # stride-2 transposed 3x3 conv, per input pixel
            total += o * 16 * (r + 1) ** 2  # 4x4 depthwise blur of its (2H + 1)^2 output
            total += cfg.img_channels * 4 * 9 * (r // 2) ** 2  # polyphase 2x upsample of the image
        total += o * o * 9 * r * r + o * cfg.img_channels * r * r  # 3x3 conv, torgb
    return total


def build_ours(res: int, seed: int) -> Generator:
    """Our generator at `res` px with random weights, incl. non-zero noise strengths and biases."""
    with seeded_init(seed):
        g = Generator(dataclasses.replace(GeneratorCfg(), img_resolution=res)).eval()
        with torch.no_grad():
            for name, p in g.named_parameters():
                if name.endswith("noise_strength") or (name.endswith(".bias") and "affine" not in name):
                    p.normal_(0.0, 0.1)
            g.mapping.w_avg.normal_()
    return g


def build_nvidia(ours: Generator) -> torch.nn.Module:
    """The official NVIDIA generator (from PYTHONPATH) with our weights loaded strictly."""
    from training.networks import Generator as NvidiaGenerator  # noqa: PLC0415 (optional dependency)

    cfg = ours.cfg
    ref = NvidiaGenerator(
        z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution,
        img_channels=cfg.img_channels,
        mapping_kwargs=dict(num_layers=cfg.mapping_layers, lr_multiplier=cfg.mapping_lr_multiplier),
        synthesis_kwargs=dict(channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                              conv_clamp=cfg.conv_clamp),
    ).eval()
    ref.load_state_dict(ours.state_dict(), strict=True)
    return ref


def bench_one(res: int, batch: int, args: argparse.Namespace) -> None:
    """Time ours (and the references) at one resolution and batch size; print one row each."""
    ours = build_ours(res, args.seed)
    models = {"ours": ours}
    for name in args.reference:
        models[name] = build_nvidia(ours)
    with seeded_init(args.seed + 1):
        ws = ours.mapping(torch.randn(batch, ours.cfg.z_dim))  # (B, num_ws, w_dim)
    with torch.inference_mode():
        fns = {name: (lambda m=m: m.synthesis(ws, noise_mode="const")) for name, m in models.items()}
        mem = {name: peak_rss(fn) for name, fn in fns.items()}
        ms = time_interleaved(fns, args.runs, args.warmup)
    for name in models:
        peak, img = mem[name]
        line = f"{res:5d} {batch:3d}  {name:9s} {ms[name] / batch:9.1f} ms/img  peak RSS {peak / 2**30:5.2f} GiB"
        if name == "ours":
            bound_ms = 2 * synthesis_macs(ours.cfg) / (args.peak_gflops * 1e9) * 1000
            line += f"  FLOP bound {bound_ms:7.1f} ms/img, time/bound {ms[name] / batch / bound_ms:5.2f}"
        else:
            diff = (mem["ours"][1] - img).abs().max().item()
            line += (f"  ours/ref time {ms['ours'] / ms[name]:5.3f} (speed-up "
                     f"{ms[name] / ms['ours']:4.2f}x)  max|diff| {diff:.2e}")
        print(line, flush=True)


def main() -> None:
    """Parse arguments and run every (resolution, batch) pair."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolutions", type=int, nargs="+", default=[256, 1024])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--runs", type=int, default=5, help="timed runs; the median is reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--peak-gflops", type=float, default=377.0,
                   help="float32 peak of the threads used, for the FLOP bound (default: 2 Zen5 cores)")
    p.add_argument("--reference", action="append", default=[], choices=["nvidia"],
                   help="also time the official code imported from PYTHONPATH (repeatable)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32")
    print("  res   B  model        time/img  memory")
    for res in args.resolutions:
        for batch in args.batches:
            bench_one(res, batch, args)


if __name__ == "__main__":
    main()
