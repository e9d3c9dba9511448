"""Write tests/fixtures/dataset-v1: a one-sample dataset in the current on-disk format.

The fixture is what synth-data (tiny preset, 8 px, every modality) writes today; it is
committed so that tests/test_dataset_format.py notices when a later change stops reading
datasets written by this version. Regenerate only for a deliberate format change (and bump
storage.dataset_index.FORMAT_VERSION / storage.manifest.MANIFEST_VERSION with it):

    PYTHONPATH=$PWD python -m tests.make_format_fixture
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mm2latent.synth import run
from mm2latent.synth.params import parse_params

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "dataset-v1"
# 1 sample at 8 px keeps every file near 10 KiB (a tar is padded to 10 KiB records anyway).
FIXTURE_PARAMS = dict(preset="tiny", n_samples=1, samples_per_shard=1, image_size=8, seed=0)


def main() -> None:
    """Write the fixture from scratch."""
    shutil.rmtree(FIXTURE, ignore_errors=True)
    params = parse_params(**FIXTURE_PARAMS, out=str(FIXTURE))
    for shard in run.plan(params):
        run.run_shard(params, shard)
    # Durations are measured, so they would differ on every regeneration; zero them.
    stats = FIXTURE / "shard-000000.stats.json"
    data = json.loads(stats.read_text())
    data["durations_s"] = {k: 0.0 for k in data["durations_s"]}
    stats.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
