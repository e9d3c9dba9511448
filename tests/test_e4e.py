"""e4e encoder: key layout, strict loading, w+ = codes + latent_avg, progressive deltas, blocks."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from mm2latent.errors import CheckpointError, ConfigError
from mm2latent.models.e4e import (
    BottleneckIRSE,
    E4ECfg,
    E4EEncoder,
    SEModule,
    e4e_encoder_from_checkpoint,
    load_e4e_encoder,
)
from mm2latent.checkpoint_io import expected_shapes
from mm2latent.presets import E4E_PRESETS, component_preset
from tests.fabricate_encoders import official_e4e_encoder_shapes, write_e4e_checkpoint

TINY = E4E_PRESETS["tiny"]


@pytest.fixture(scope="module")
def ckpt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("e4e") / "e4e_ffhq_encode.pt"
    return path, write_e4e_checkpoint(path, TINY, seed=5)


@pytest.fixture(scope="module")
def model(ckpt_file):
    return load_e4e_encoder(ckpt_file[0], TINY)


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def _copy(ckpt):
    return {**ckpt, "state_dict": dict(ckpt["state_dict"])}


@pytest.mark.parametrize("cfg", [E4ECfg(), TINY, component_preset(E4E_PRESETS, "tiny", w_dim=512,
                                                                 stylegan_size=64)],
                         ids=["ffhq1024", "tiny", "tiny-w512"])
def test_key_set_and_shapes_match_the_official_encoder(cfg):
    with torch.device("meta"):  # the full encoder has 267 M parameters: shapes only
        module = E4EEncoder(cfg)
    shapes = expected_shapes(module)
    assert shapes.pop("latent_avg") == (cfg.n_styles, cfg.w_dim)
    assert shapes == {f"encoder.{k}": v for k, v in official_e4e_encoder_shapes(cfg).items()}
    if cfg == E4ECfg():
        assert cfg.n_styles == 18
        assert shapes["encoder.styles.17.convs.10.weight"] == (512, 512, 3, 3)  # 64 -> 1: 6 convs
        assert "encoder.styles.2.convs.8.weight" not in shapes  # 16 -> 1: 4 convs
        assert "encoder.body.0.shortcut_layer.0.weight" not in shapes  # 64 -> 64: max-pool
        assert shapes["encoder.body.3.shortcut_layer.0.weight"] == (128, 64, 1, 1)
        assert shapes["encoder.body.23.res_layer.5.fc1.weight"] == (32, 512, 1, 1)
    if cfg.w_dim != cfg.style_channels:  # narrow style convs, full-width w
        assert shapes["encoder.styles.9.linear.weight"] == (cfg.w_dim, cfg.style_channels)


def test_known_tensors_round_trip(ckpt_file, model):
    ckpt = ckpt_file[1]
    sd = ckpt["state_dict"]
    key = "encoder.body.13.res_layer.5.fc1.weight"
    assert torch.equal(model.encoder.body[13].res_layer[5].fc1.weight, sd[key])
    assert torch.equal(model.encoder.styles[9].linear.weight, sd["encoder.styles.9.linear.weight"])
    assert torch.equal(model.latent_avg, ckpt["latent_avg"])
    assert not model.training


@pytest.mark.parametrize("key", ["encoder.body.2.res_layer.2.weight", "encoder.latlayer2.bias",
                                 "encoder.styles.0.convs.0.weight"])
def test_changing_one_named_tensor_changes_w(ckpt_file, model, images, key):
    ckpt = _copy(ckpt_file[1])
    ckpt["state_dict"][key] = ckpt["state_dict"][key] + 0.5
    changed = e4e_encoder_from_checkpoint(ckpt, "mem", TINY)
    with torch.no_grad():
        assert (changed.invert(images) - model.invert(images)).abs().max() > 1e-4


def test_latlayer2_only_moves_the_fine_styles(ckpt_file, model, images):
    ckpt = _copy(ckpt_file[1])
    ckpt["state_dict"]["encoder.latlayer2.bias"] += 1.0
    changed = e4e_encoder_from_checkpoint(ckpt, "mem", TINY)
    with torch.no_grad():
        diff = (changed.invert(images) - model.invert(images)).abs().amax(dim=(0, 2))
    assert diff[:7].max() == 0 and diff[7:].min() > 0  # p1 feeds styles 7.. only


def _zero_style_outputs(model: E4EEncoder) -> E4EEncoder:
    m = e4e_encoder_from_checkpoint({"state_dict": {f"encoder.{k}": v for k, v in
                                                    model.encoder.state_dict().items()},
                                     "latent_avg": model.latent_avg}, "mem", model.cfg)
    with torch.no_grad():
        for style in m.encoder.styles:
            style.linear.weight.zero_()
            style.linear.bias.zero_()
    return m


def test_w_plus_is_codes_plus_latent_avg(model, images):
    m = _zero_style_outputs(model)
    with torch.no_grad():
        torch.testing.assert_close(m.invert(images), m.latent_avg.expand(2, -1, -1),
                                   rtol=0, atol=0)


def test_first_style_is_broadcast_and_deltas_are_per_row(model, images):
    m = _zero_style_outputs(model)
    v, u = torch.linspace(-1, 1, TINY.w_dim), torch.linspace(2, 3, TINY.w_dim)
    with torch.no_grad():
        m.encoder.styles[0].linear.bias.copy_(v)
        m.encoder.styles[5].linear.bias.copy_(u)
        w = m.invert(images) - m.latent_avg
        codes_stage4 = m.encoder(m.preprocess(images), stage=4)
    want = v.expand(2, TINY.n_styles, -1).clone()
    want[:, 5] += u
    torch.testing.assert_close(w, want, rtol=0, atol=1e-6)
    torch.testing.assert_close(codes_stage4, v.expand(2, TINY.n_styles, -1))  # delta 5 inactive


def test_invert_resizes_and_normalises(model, images):
    grey = torch.full((1, 3, 200, 200), 0.3)  # resizing keeps a constant image constant
    with torch.no_grad():
        torch.testing.assert_close(model.invert(grey), model.invert(torch.full((1, 3, 64, 64),
                                                                                0.3)))
        torch.testing.assert_close(model.invert(images), model.latent_avg +
                                   model.encoder(images * 2 - 1))  # mean = std = 0.5
    with pytest.raises(ValueError, match=r"\(B, 3, 64, 64\)"):
        model.encoder(torch.zeros(1, 3, 128, 128))


def test_se_module_gates_channels():
    se = SEModule(32, 16)
    x = torch.randn(2, 32, 5, 5)
    with torch.no_grad():
        se.fc1.weight.zero_()
        torch.testing.assert_close(se(x), x * 0.5)  # sigmoid(0): every gate 0.5
        se.fc1.weight.normal_()
        se.fc2.weight.normal_()
        gate = torch.sigmoid(se.fc2.weight[:, :, 0, 0] @ torch.relu(
            se.fc1.weight[:, :, 0, 0] @ x.mean(dim=(2, 3)).T)).T  # (B, C)
        torch.testing.assert_close(se(x), x * gate[:, :, None, None])
    assert se.fc1.bias is None and se.fc1.weight.shape == (2, 32, 1, 1)


def test_shortcuts_subsample_or_project():
    cfg = E4ECfg(base_width=16)
    same = BottleneckIRSE(16, 16, 2, cfg).eval()
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        same.res_layer[4].weight.zero_()  # the residual's last BN outputs 0
        same.res_layer[4].bias.zero_()
        torch.testing.assert_close(same(x), x[:, :, ::2, ::2], rtol=0, atol=0)
    proj = BottleneckIRSE(16, 32, 2, cfg).eval()
    assert isinstance(proj.shortcut_layer[0], torch.nn.Conv2d)
    assert proj.shortcut_layer[0].stride == (2, 2) and proj.shortcut_layer[0].bias is None
    with torch.no_grad():
        proj.res_layer[4].weight.zero_()
        proj.res_layer[4].bias.zero_()
        want = proj.shortcut_layer[1](proj.shortcut_layer[0](x))
        torch.testing.assert_close(proj(x), want)


def test_namespace_opts_load_without_global_allowlist(tmp_path, model, images):
    path = tmp_path / "ns.pt"
    write_e4e_checkpoint(path, TINY, seed=5, opts_namespace=True)
    with pytest.raises(Exception):  # plain weights_only loading refuses the Namespace
        torch.load(path, weights_only=True)
    loaded = load_e4e_encoder(path, TINY)
    assert argparse.Namespace not in torch.serialization.get_safe_globals()
    with torch.no_grad():
        torch.testing.assert_close(loaded.invert(images), model.invert(images), rtol=0, atol=0)


def test_missing_and_misshaped_keys_name_file_and_key(tmp_path, ckpt_file):
    ckpt = _copy(ckpt_file[1])
    del ckpt["state_dict"]["encoder.styles.4.convs.2.bias"]
    path = tmp_path / "missing.pt"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"encoder\.styles\.4\.convs\.2\.bias") as err:
        load_e4e_encoder(path, TINY)
    assert str(path) in str(err.value)
    ckpt = _copy(ckpt_file[1])
    ckpt["latent_avg"] = torch.zeros(18, 512)
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"latent_avg.*\(18, 512\).*\(14, 64\)"):
        load_e4e_encoder(path, TINY)
    del ckpt["latent_avg"]
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="latent_avg"):
        load_e4e_encoder(path, TINY)


def test_truncated_and_wrong_files(tmp_path, ckpt_file):
    data = ckpt_file[0].read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match="truncated") as err:
        load_e4e_encoder(path, TINY)
    assert str(path) in str(err.value)
    wrong = tmp_path / "deca_model.tar"
    torch.save({"E_flame": {}}, wrong)
    with pytest.raises(CheckpointError, match="state_dict"):
        load_e4e_encoder(wrong, TINY)


def test_config_rules():
    assert E4ECfg(stylegan_size=256).n_styles == 14
    assert math.prod(E4ECfg().stage_depths) == 64 * 128 * 256 * 512
    with pytest.raises(ConfigError, match="se_reduction"):
        E4ECfg(base_width=8)
    with pytest.raises(ConfigError, match="power of two"):
        E4ECfg(input_size=200)
    with pytest.raises(ConfigError, match="valid"):
        component_preset(E4E_PRESETS, "tiny", widht=3)
