"""Write tests/fixtures/reports-v1/mapping-summary.json: a run's summary.json in the current format.

A two-epoch flame MappingNet on fabricated vectors, finished the way `mapping_run` finishes a
run (curves, summary.json, registration), in a temporary directory; only summary.json is kept.
The committed file was written by the code before training reports were typed (dicts), so
tests/test_training_reports.py proves that summaries written then still read. Regenerate only
for a deliberate format change:

    PYTHONPATH=$PWD python -m tests.make_report_fixture
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mm2latent.models.mapping_net import MappingNetCfg
from mm2latent.training import pipeline
from mm2latent.training.config import MappingTrainCfg
from mm2latent.training.loop import fit
from mm2latent.training.mapping import mapping_job
from mm2latent.training.reports import MappingTrainReport
from tests.fabricate_training import learnable_vectors

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "reports-v1" / "mapping-summary.json"
NET = MappingNetCfg(text_dim=16, spatial_dim=159, hidden_dim=16, depth=2, w_dim=16)
CFG = MappingTrainCfg(modality="flame", epochs=2, batch_size=8, lr=3e-3, val_fraction=0.25, seed=5)


def main() -> None:
    """Train, finish the run in a temporary directory, copy its summary.json to the fixture."""
    rows = [learnable_vectors(i) for i in range(16)]
    arrays = {"index": np.arange(16), "farl": np.stack([r["farl"] for r in rows]),
              "spatial": np.stack([r["flame"] for r in rows]), "w": np.stack([r["w"] for r in rows])}
    with tempfile.TemporaryDirectory() as tmp:
        report = fit(mapping_job(arrays, NET, CFG), CFG, f"{tmp}/run", "h" * 64)
        fields = {f.name: getattr(report, f.name) for f in dataclasses.fields(report)}
        summary = MappingTrainReport(**{**fields, "num_samples": 16}, embeddings_version=None)
        pipeline._finish_run(summary, "mapping-flame", "fixture-dataset", f"{tmp}/registry", {}, {})
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(tmp) / "run" / "summary.json", FIXTURE)


if __name__ == "__main__":
    main()
