"""Typed parameters of an edit-dataset run, validated before any model is built."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mm2latent_core.errors import ConfigError


class EditDatasetParams(BaseModel):
    """What an edit-dataset run reads, where it writes, and how it shards."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: str                               # folder / fsspec URL of FFHQ-aligned photos, or a synth-data dataset
    spec: str                                # URL of the YAML edit spec
    models: str = "runs/tiny"                # `mm2latent train --out` directory (its registry/)
    out: str = "data/edits"                  # fsspec URL of the output dataset root
    preset: str = "tiny"                     # preset the models were trained with
    samples_per_shard: int = Field(64, gt=0)  # source photos per .tar shard
    device: str = "cpu"                      # torch device

    def shard_indices(self, shard: int, n_samples: int) -> range:
        """Source indices stored in shard `shard` of a run over `n_samples` photos."""
        start = shard * self.samples_per_shard
        return range(start, min(start + self.samples_per_shard, n_samples))


def parse_edit_params(**values: object) -> EditDatasetParams:
    """EditDatasetParams, with pydantic's error turned into a ConfigError naming each field."""
    try:
        return EditDatasetParams(**values)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"Invalid edit-dataset parameters: {problems}.") from e
