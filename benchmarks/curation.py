"""Benchmark of attributes + curation at two dataset sizes: time and peak RSS, and their ratios.

Usage (from the repository root):
    python -m benchmarks.curation                     # 2048 and 16384 samples, 256 per shard
    python -m benchmarks.curation --sizes 512,4096 --samples-per-shard 128

The datasets are fabricated (mm2latent.fabricate.datasets: random 8 px images, masks and
sketches, random w / flame / farl at the paper's widths 512 / 159 / 512), not synth-data
output: synth-data at 16k tiny samples takes hours on 2 cores, and the attributes and curation
read only the manifests, the masks and the stored vectors, whose sizes do not depend on how
the samples were made. Each measured step runs in a fresh subprocess (library calls, no Prefect
server), which reports its wall time and the peak RSS sampled every 20 ms while it worked
(imports excluded: the baseline RSS after imports is reported too).

- attributes: mm2latent.attributes.run.plan + run_shard for every shard (mask shares, DECA pose
  from the stored flame codes, FaRL zero-shot from the stored embeddings and the seeded text
  tower).
- curation: mm2latent.curation.run.plan (selection: filters, faiss near-duplicates over every
  surviving w, balance) + copy_shard for every output shard + summarize (histograms, PNG).

Streaming means the peak RSS grows by the surviving samples' n x 512 float32 vectors and the
dedupe index's unit copy of them (2 x 2 KiB per sample) and a few bytes per sample of selection
state, not with the shards' bytes: the ratio of peaks stays far below the ratio of sizes while
the ratio of times follows it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

DIMS = {"w": 512, "flame": 159, "farl": 512}
SPEC = {"filters": {"min_face_share": 0.0, "ranges": {"deca.yaw_deg": [-60, 60]},
                    "near_duplicates": {"vector": "w", "max_cosine": 0.2}},
        "balance": {"attributes": {"smiling": {"column": "farl.Smiling", "threshold": 0.5},
                                   "yaw": {"column": "deca.yaw_deg", "bins": [-60, 0, 60]}}},
        "seed": 0}

STEP = r"""
import json, sys, time
from benchmarks.generator import PeakRss
import mm2latent.attributes.run as attributes
from mm2latent.curation import run as curation
from mm2latent.curation.attributes_input import read_attribute_shards
from mm2latent.curation.spec import spec_from_json
import psutil

step, source, out, spec = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
baseline = psutil.Process().memory_info().rss
start = time.perf_counter()
with PeakRss() as rss:
    if step == "attributes":
        plan = attributes.plan(source, batch_size=256)
        for shard in plan.todo:
            attributes.run_shard(plan, shard)
    else:
        chosen, todo = curation.plan(source, out, spec_from_json(spec), read_attribute_shards)
        for shard in todo:
            curation.copy_shard(chosen, shard)
        report = curation.summarize(chosen, read_attribute_shards)
print(json.dumps({"seconds": time.perf_counter() - start, "peak_mib": rss.peak / 2**20,
                  "baseline_mib": baseline / 2**20}))
"""


def fabricate(url: str, n: int, per_shard: int) -> float:
    """Write an n-sample fabricated dataset; seconds taken."""
    from mm2latent.fabricate.datasets import make_index, write_shard
    from storage.dataset_index import prepare_output

    start = time.perf_counter()
    prepare_output(url, make_index(n, per_shard, DIMS))
    for shard in range(-(-n // per_shard)):
        indices = list(range(shard * per_shard, min((shard + 1) * per_shard, n)))
        write_shard(url, shard, indices, failed={i for i in indices if i % 97 == 0}, dims=DIMS)
    return time.perf_counter() - start


def measure(step: str, source: str, out: str, spec: dict) -> dict:
    """Run one step in a fresh subprocess; its JSON report."""
    done = subprocess.run([sys.executable, "-c", STEP, step, source, out, json.dumps(spec)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{step} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2048,16384", help="comma list of dataset sizes")
    parser.add_argument("--samples-per-shard", type=int, default=256)
    parser.add_argument("--keep", default=None, help="directory to keep the datasets in")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    root = args.keep or tempfile.mkdtemp(prefix="curation-bench-")
    print(f"load average before: {os.getloadavg()}; datasets under {root}")
    results = {}
    for n in sizes:
        source, out = f"{root}/src-{n}", f"{root}/curated-{n}"
        made = fabricate(source, n, args.samples_per_shard)
        spec = dict(SPEC, n=n // 8)
        results[n] = {"fabricate_s": made, "attributes": measure("attributes", source, out, spec),
                      "curation": measure("curation", source, out, spec)}
        report = json.loads(open(f"{out}/curation.json").read())
        results[n]["selected"], results[n]["removed"] = report["selected"], report["removed"]
        print(json.dumps({n: results[n]}))
    small, large = sizes[0], sizes[-1]
    print(f"\n{'step':<12}{'n':>8}{'seconds':>10}{'peak MiB':>10}{'over baseline':>15}")
    for n in sizes:
        for step in ("attributes", "curation"):
            r = results[n][step]
            print(f"{step:<12}{n:>8}{r['seconds']:>10.1f}{r['peak_mib']:>10.0f}"
                  f"{r['peak_mib'] - r['baseline_mib']:>15.0f}")
    print(f"\nratio {large}/{small} = {large / small:g} samples:")
    for step in ("attributes", "curation"):
        a, b = results[small][step], results[large][step]
        print(f"  {step}: time x{b['seconds'] / a['seconds']:.2f}, peak RSS x"
              f"{b['peak_mib'] / a['peak_mib']:.2f} (over baseline x"
              f"{(b['peak_mib'] - b['baseline_mib']) / max(a['peak_mib'] - a['baseline_mib'], 1e-9):.2f})")
    print(f"curation report PNG: {root}/curated-{large}/curation.png")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
