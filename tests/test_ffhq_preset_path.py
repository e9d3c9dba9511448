"""The `ffhq` preset's code path end to end, on fabricated official-layout weight files.

Every component is loaded through the registry (cache look-up, digest record, format loader)
from files in the official layouts, at small sizes, and synth-data must use exactly those
weights: w, masks and FaRL embeddings are recomputed from the loaded files and compared.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib

import numpy as np
import pytest
import torch

from mm2latent import model_loading, presets, weights
from mm2latent_core.errors import ConfigError, DatasetError, MissingWeightsError
from mm2latent.models.clip_loaders import load_farl
from mm2latent.models.deca import load_deca_flame_encoder
from mm2latent.models.face_parser.facer_farl import load_facer_farl
from mm2latent.models.stylegan2.checkpoints import load_nvidia_pickle
from mm2latent.modalities.registry import default_registry
from mm2latent.models.stylegan2.generator import Generator, GeneratorCfg
from mm2latent.presets import CLIP_PRESETS, DECA_PRESETS
from mm2latent.seeding import seeded_init
from mm2latent import annotation
from mm2latent.synth import run, stages
from mm2latent.synth.params import parse_params
from storage.readers import iter_samples, read_vectors
from tests.fabricate_clip import write_farl_pth
from tests.fabricate_encoders import write_deca_checkpoint
from tests.fabricate_parsers import write_facer_farl_script
from tests.fabricate_stylegan2 import write_nvidia_pickle

SMALL_G = GeneratorCfg(z_dim=512, w_dim=512, img_resolution=32, mapping_layers=2,
                       channel_base=512, channel_max=32)
TINY_FARL = CLIP_PRESETS["tiny"]
TINY_DECA = DECA_PRESETS["tiny"]


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def ffhq_cache(tmp_path, monkeypatch):
    """A weights cache holding fabricated ffhq-preset files; the preset shrunk to match them."""
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("MM2LATENT_CACHE", str(cache))
    files = {c: cache / weights.get_spec(n).filename
             for c, n in presets.PRESETS["ffhq"].weight_names().items() if c != "e4e"}
    with seeded_init(7):
        write_nvidia_pickle(files["generator"], Generator(SMALL_G))
    write_facer_farl_script(files["parser"], seed=3)
    write_deca_checkpoint(files["deca"], TINY_DECA, seed=5)
    write_farl_pth(files["farl"], TINY_FARL, seed=9)
    small = dataclasses.replace(presets.PRESETS["ffhq"], store_size=32, farl=TINY_FARL,
                                deca=TINY_DECA)
    monkeypatch.setitem(presets.PRESETS, "ffhq", small)
    # Same loaders, told the small architectures the fabricated files have.
    monkeypatch.setitem(model_loading.LOADERS, "farl-pth", functools.partial(load_farl, cfg=TINY_FARL))
    monkeypatch.setitem(model_loading.LOADERS, "deca-tar",
                        functools.partial(load_deca_flame_encoder, cfg=TINY_DECA))
    return files


def _make(out, n=5, **kw):
    params = parse_params(preset="ffhq", n_samples=n, samples_per_shard=3, batch_size=2, out=str(out), **kw)
    for shard in run.plan(params):
        run.run_shard(params, shard)
    return params


def test_ffhq_path_uses_exactly_the_cached_weights(ffhq_cache, tmp_path):
    params = _make(tmp_path / "ds")
    index = (tmp_path / "ds" / "dataset.json").read_text()
    for component, path in ffhq_cache.items():
        assert _sha256(path) in index, f"{component} digest not recorded in dataset.json"

    vectors = read_vectors(str(tmp_path / "ds"), columns=("w", "farl", "flame"))
    G = load_nvidia_pickle(ffhq_cache["generator"])
    z = stages.latents(params.seed, vectors["index"].tolist(), SMALL_G.z_dim)
    with torch.inference_mode():
        expected_w = G.mapping(z, params.truncation_psi)[:, 0]
    np.testing.assert_allclose(vectors["w"], expected_w.numpy(), atol=1e-5)

    samples = list(iter_samples(str(tmp_path / "ds"), modalities=("image", "mask", "farl", "flame"),
                                split_by_node=False, split_by_worker=False, registry=default_registry()))
    images = torch.stack([s["image"] for s in samples])  # (B, 3, 32, 32) in [0, 1]
    farl = load_farl(ffhq_cache["farl"], TINY_FARL).eval()
    parser = load_facer_farl(ffhq_cache["parser"]).eval()
    deca = load_deca_flame_encoder(ffhq_cache["deca"], TINY_DECA).eval()
    with torch.inference_mode():
        pixels = (images * 255).round().to(torch.uint8)  # the stored PNG pixels: FaRL's input
        np.testing.assert_allclose(np.stack([s["farl"] for s in samples]),
                                   annotation.embed(farl.encode_image, pixels).numpy(), atol=1e-5)
        labels, _ = annotation.parse_masks(parser, images)
        from mm2latent.models.deca import ffhq_crop_for_deca
        flame = annotation.embed(deca.flame159, ffhq_crop_for_deca(images))
    assert np.array_equal(np.stack([s["mask"] for s in samples]), labels.numpy().astype(np.int64))
    np.testing.assert_allclose(np.stack([s["flame"] for s in samples]), flame.numpy(), atol=1e-5)


def test_other_weights_refuse_to_resume_into_the_dataset(ffhq_cache, tmp_path):
    _make(tmp_path / "ds", n=3)
    before = {p.name: p.read_bytes() for p in (tmp_path / "ds").iterdir()}
    # A different generator file, recorded afresh (as after `weights verify --reset`).
    with seeded_init(8):
        write_nvidia_pickle(ffhq_cache["generator"], Generator(SMALL_G))
    weights.forget_recorded("stylegan2.ffhq1024-nvidia")
    with pytest.raises(DatasetError, match="weights.generator"):
        _make(tmp_path / "ds", n=3)
    assert {p.name: p.read_bytes() for p in (tmp_path / "ds").iterdir()} == before


def test_missing_weights_fail_before_anything_is_written(ffhq_cache, tmp_path):
    ffhq_cache["deca"].unlink()
    with pytest.raises(MissingWeightsError, match="deca_model.tar"):
        _make(tmp_path / "ds")
    assert not (tmp_path / "ds").exists() or not any((tmp_path / "ds").iterdir())


def test_weights_whose_widths_disagree_with_the_preset_are_refused(ffhq_cache, tmp_path, monkeypatch):
    wider = dataclasses.replace(presets.PRESETS["ffhq"], generator=dataclasses.replace(SMALL_G, w_dim=256))
    monkeypatch.setitem(presets.PRESETS, "ffhq", wider)
    params = parse_params(preset="ffhq", n_samples=2, samples_per_shard=2, out=str(tmp_path / "ds"))
    run.plan(params)
    with pytest.raises(ConfigError, match="w_dim=512 but the preset's generator config says 256"):
        run.run_shard(params, 0)
