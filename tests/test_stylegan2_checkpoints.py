"""StyleGAN2 checkpoint loaders: NVIDIA pickle, rosinality .pt and e4e .pt, on fabricated files."""

from __future__ import annotations

import argparse
import copy
import os
import pickle

import pytest
import torch

from mm2latent_core.errors import CheckpointError
from mm2latent.models.stylegan2.checkpoints import (
    load_e4e_decoder,
    load_generator,
    load_nvidia_pickle,
    load_rosinality,
)
from mm2latent.models.stylegan2.generator import Generator, GeneratorCfg
from mm2latent.seeding import seeded_init
from tests.fabricate_stylegan2 import (
    nvidia_init_kwargs,
    rosinality_state_dict,
    write_e4e_pt,
    write_nvidia_pickle,
    write_rosinality_pt,
)

# 16 px, 4 mapping layers (so mapping.fc3 exists), channels 16 -> 8 at 16 px.
CFG = GeneratorCfg(z_dim=16, w_dim=16, img_resolution=16, mapping_layers=4, channel_base=128,
                   channel_max=16, conv_clamp=256.0)
NAMED = ("mapping.fc3.weight", "synthesis.b16.conv1.affine.bias", "synthesis.b8.conv0.noise_const",
         "synthesis.b4.const", "synthesis.b16.torgb.bias", "mapping.w_avg")


def _random_generator(cfg: GeneratorCfg = CFG, seed: int = 0) -> Generator:
    """A Generator whose every tensor (biases, noise strengths, w_avg too) is random, not init."""
    with seeded_init(seed):
        G = Generator(cfg)
        with torch.no_grad():
            for name, t in G.state_dict().items():
                if not name.endswith("resample_filter"):  # mapping: undo its lr gain, as upstream init
                    scale = 0.5 / cfg.mapping_lr_multiplier if name.startswith("mapping.fc") else 0.5
                    t.copy_(torch.randn_like(t) * scale)
    return G.eval()


def _render(G: Generator) -> torch.Tensor:
    z = torch.randn(2, G.cfg.z_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        return G(z, truncation_psi=0.7, noise_mode="const")  # (2, 3, R, R)


@pytest.fixture(scope="module")
def G() -> Generator:
    return _random_generator()


@pytest.fixture(scope="module")
def files(G: Generator, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("sg2")
    paths = {k: str(d / name) for k, name in
             (("nvidia", "ffhq.pkl"), ("rosinality", "g.pt"), ("e4e", "e4e.pt"))}
    write_nvidia_pickle(paths["nvidia"], G)
    write_rosinality_pt(paths["rosinality"], G)
    write_e4e_pt(paths["e4e"], G)
    return paths


def _assert_same_state(loaded: Generator, G: Generator) -> None:
    ref = G.state_dict()
    got = loaded.state_dict()
    assert set(got) == set(ref)
    for key in ref:
        assert torch.equal(got[key], ref[key]), key


def test_nvidia_pickle_tensors_and_config_round_trip(G, files):
    loaded = load_nvidia_pickle(files["nvidia"])
    assert loaded.cfg == CFG
    for key in NAMED:  # each named official tensor lands in the parameter of the same name
        assert torch.equal(loaded.state_dict()[key], G.state_dict()[key]), key
    _assert_same_state(loaded, G)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())


def test_every_format_gives_the_same_image(G, files):
    ref = _render(G)
    for fmt, path in files.items():
        loaded = load_generator(path)
        assert (_render(loaded) - ref).abs().max().item() <= 1e-4, fmt
    assert torch.equal(load_rosinality(files["rosinality"]).mapping.w_avg, G.mapping.w_avg)


def test_rosinality_names_map_to_nvidia_names(G, files):
    ros = torch.load(files["rosinality"], weights_only=True)["g_ema"]
    nv = load_rosinality(files["rosinality"]).state_dict()
    pairs = {  # rosinality key -> (NVIDIA key, how the NVIDIA tensor is derived)
        "style.4.weight": ("mapping.fc3.weight", lambda t: t),
        "convs.3.conv.modulation.bias": ("synthesis.b16.conv1.affine.bias", lambda t: t),
        "convs.3.conv.weight": ("synthesis.b16.conv1.weight", lambda t: t[0]),
        "noises.noise_1": ("synthesis.b8.conv0.noise_const", lambda t: t[0, 0]),
        "convs.0.noise.weight": ("synthesis.b8.conv0.noise_strength", lambda t: t.reshape(())),
        "to_rgbs.1.bias": ("synthesis.b16.torgb.bias", lambda t: t.reshape(-1)),
        "to_rgbs.0.upsample.kernel": ("synthesis.b8.resample_filter", lambda t: t / 4),
        "input.input": ("synthesis.b4.const", lambda t: t[0]),
    }
    for ros_key, (nv_key, derive) in pairs.items():
        assert torch.equal(nv[nv_key], derive(ros[ros_key])), (ros_key, nv_key)


@pytest.mark.parametrize("key", NAMED[:3])
def test_changing_one_named_tensor_changes_the_output(G, files, key, tmp_path):
    changed = copy.deepcopy(G)
    with torch.no_grad():
        changed.state_dict()[key].neg_()  # a large change even under the mapping lr gain of 0.01
    path = tmp_path / "changed.pkl"
    write_nvidia_pickle(path, changed)
    diff = (_render(load_nvidia_pickle(path)) - _render(load_nvidia_pickle(files["nvidia"]))).abs().max()
    assert diff.item() > 1e-3


def test_old_numpy_names_protocol_3_and_tf_converted_kwargs_load(G, tmp_path):
    path = tmp_path / "old.pkl"  # a Python 3.7 / numpy 1.x era file converted by legacy.py
    write_nvidia_pickle(path, G, nvidia_init_kwargs(CFG, converted_from_tf=True), protocol=3,
                        numpy_module="numpy.core.multiarray")
    loaded = load_nvidia_pickle(path)
    assert loaded.cfg == CFG
    _assert_same_state(loaded, G)


class _RunsShell:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_unexpected_global_is_refused_without_running_it(G, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    write_nvidia_pickle(path, G, training_set_kwargs=_RunsShell(str(marker)))
    with pytest.raises(CheckpointError, match=r"system") as info:
        load_nvidia_pickle(path)
    assert str(path) in str(info.value)
    assert not marker.exists()
    path.write_bytes(pickle.dumps({"G_ema": eval}))  # any other global: refused by name
    with pytest.raises(CheckpointError, match=r"builtins\.eval"):
        load_nvidia_pickle(path)


def test_module_source_is_never_executed(G, tmp_path):
    marker = tmp_path / "executed"
    src = f"open({str(marker)!r}, 'w').write('ran')\nraise RuntimeError('module_src executed')\n"
    path = tmp_path / "src.pkl"
    write_nvidia_pickle(path, G, module_src=src)
    _assert_same_state(load_nvidia_pickle(path), G)
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["nvidia", "rosinality", "e4e"])
def test_truncated_file_is_a_checkpoint_error(files, fmt, tmp_path):
    data = open(files[fmt], "rb").read()
    path = tmp_path / f"cut-{fmt}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_generator(path)
    assert str(path) in str(info.value)


def test_wrong_files_are_checkpoint_errors(files, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(1),
                                   dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(CheckpointError, match="Supported"):
        load_generator(junk)
    with pytest.raises(CheckpointError, match=str(junk)):
        load_nvidia_pickle(junk)
    with pytest.raises(CheckpointError, match="torch.save file"):
        load_nvidia_pickle(files["rosinality"])
    with pytest.raises(CheckpointError, match="plain pickle, not a torch.save file"):
        load_rosinality(files["nvidia"])
    with pytest.raises(CheckpointError, match="g_ema"):
        load_rosinality(files["e4e"])
    with pytest.raises(CheckpointError, match="cannot open"):
        load_generator(tmp_path / "absent.pkl")


def test_wrong_shape_names_key_and_shapes(G, tmp_path):
    path = tmp_path / "shape.pkl"  # init_kwargs claim twice the channels the tensors have
    write_nvidia_pickle(path, G, nvidia_init_kwargs(CFG, synthesis_kwargs={
        "channel_base": 256, "channel_max": 32, "num_fp16_res": 0, "conv_clamp": 256}))
    with pytest.raises(CheckpointError, match=r"synthesis\.b4\.const has shape \(16, 4, 4\), "
                                              r"expected \(32, 4, 4\)"):
        load_nvidia_pickle(path)
    sd = rosinality_state_dict(G)
    sd["style.2.weight"] = sd["style.2.weight"][:, :8]
    torch.save({"g_ema": sd, "latent_avg": G.mapping.w_avg}, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"mapping\.fc1\.weight has shape \(16, 8\), "
                                              r"expected \(16, 16\)"):
        load_rosinality(tmp_path / "shape.pt")


def test_missing_keys_are_named(G, tmp_path):
    path = tmp_path / "missing.pkl"  # init_kwargs claim one more mapping layer than stored
    write_nvidia_pickle(path, G, nvidia_init_kwargs(CFG, mapping_kwargs={"num_layers": 5}))
    with pytest.raises(CheckpointError, match=r"mapping\.fc4\.weight"):
        load_nvidia_pickle(path)
    sd = rosinality_state_dict(G)
    del sd["convs.1.activate.bias"]
    torch.save({"g_ema": sd, "latent_avg": G.mapping.w_avg}, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"convs\.1\.activate\.bias"):
        load_rosinality(tmp_path / "missing.pt")


def test_conditional_or_non_skip_generators_are_refused(G, tmp_path):
    path = tmp_path / "cond.pkl"
    write_nvidia_pickle(path, G, nvidia_init_kwargs(CFG, c_dim=10))
    with pytest.raises(CheckpointError, match=r"c_dim=10"):
        load_nvidia_pickle(path)
    write_nvidia_pickle(path, G, nvidia_init_kwargs(CFG, synthesis_kwargs={"architecture": "resnet"}))
    with pytest.raises(CheckpointError, match=r"architecture='resnet'"):
        load_nvidia_pickle(path)


@pytest.mark.parametrize("as_namespace", [False, True])
def test_e4e_decoder(G, tmp_path, as_namespace):
    path = tmp_path / "e4e.pt"
    write_e4e_pt(path, G, opts_as_namespace=as_namespace)
    decoder = load_e4e_decoder(path)
    # Namespace was admitted for that one load only (torch may add its own entries lazily).
    assert argparse.Namespace not in torch.serialization.get_safe_globals()
    latent_avg = torch.load(path, weights_only=False)["latent_avg"]
    assert latent_avg.shape == (G.num_ws, CFG.w_dim)
    assert torch.equal(decoder.mapping.w_avg, latent_avg[0])
    _assert_same_state(decoder, G)
    _assert_same_state(load_rosinality(path, prefix="decoder."), G)


def test_rosinality_training_checkpoint_with_args_loads(G, tmp_path):
    path = tmp_path / "000100.pt"
    write_rosinality_pt(path, G, with_training_state=True, latent_avg=False)
    loaded = load_rosinality(path)
    assert torch.equal(loaded.synthesis.b16.conv1.weight, G.synthesis.b16.conv1.weight)
    assert torch.count_nonzero(loaded.mapping.w_avg) == 0  # no latent_avg in train.py checkpoints


def test_loading_leaves_the_global_rng_alone(files):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_generator(files["nvidia"])
    assert torch.equal(torch.rand(3), expected)
