"""MappingNet architecture switches, input layout, official checkpoint loading, PTEG, editing."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mm2latent.errors import CheckpointError, ConfigError
from mm2latent.models.mapping_net import (
    EqualizedLinear,
    MappingNet,
    MappingNetCfg,
    PseudoTextCfg,
    apply_edit,
    edit_direction,
    load_official_mapping_net,
    pseudo_text_embedding,
)
from mm2latent.seeding import seeded_init
from tests.fabricate_mapping import official_mapping_state, write_lightning_checkpoint


# A small net for tests (the presets use the paper's size, MappingNetCfg()).
TINY = MappingNetCfg(text_dim=32, spatial_dim=32, hidden_dim=32, depth=4, w_dim=16)


def build(seed: int = 0, base: MappingNetCfg = TINY, **overrides: object) -> MappingNet:
    with seeded_init(seed):
        return MappingNet(dataclasses.replace(base, **overrides))


def count(net: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in net.modules())


@pytest.mark.parametrize(
    ("overrides", "n_linear", "n_bn", "n_dropout", "n_act"),
    [
        ({}, 12, 1, 1, 12),  # the authors' network
        ({"use_batchnorm": False}, 12, 0, 1, 12),
        ({"dropout": 0.0}, 12, 1, 0, 12),
        ({"final_activation": False}, 12, 1, 1, 11),
        ({"depth": 8}, 8, 1, 1, 8),
        ({"depth": 4, "use_batchnorm": False, "dropout": 0.0}, 4, 0, 0, 4),
        ({"depth": 1}, 1, 1, 1, 1),
    ],
)
def test_switches_change_the_architecture_as_documented(
    overrides: dict, n_linear: int, n_bn: int, n_dropout: int, n_act: int
) -> None:
    net = MappingNet(MappingNetCfg(**overrides))
    assert count(net, nn.Linear) == n_linear
    assert count(net, nn.BatchNorm1d) == n_bn
    assert count(net, nn.Dropout) == n_dropout
    assert count(net, nn.LeakyReLU) == n_act
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert linears[0].in_features == 1024 and linears[-1].out_features == 512
    ends_linear = overrides.get("final_activation") is False
    assert isinstance(net.net[-1], nn.Linear if ends_linear else nn.LeakyReLU)


def test_default_layout_uses_the_authors_indices_and_shapes() -> None:
    shapes = {k: tuple(v.shape) for k, v in MappingNet(MappingNetCfg()).state_dict().items()}
    assert shapes["net.0.running_mean"] == (1024,)
    assert shapes["net.2.weight"] == (512, 1024)
    assert shapes["net.24.weight"] == (512, 512)
    assert "net.26.weight" not in shapes
    assert isinstance(MappingNet(MappingNetCfg()).net[1], nn.Dropout)
    assert MappingNet(MappingNetCfg()).net[1].p == 0.5


def test_wplus_output_reshapes_the_last_layer() -> None:
    net = build(output="wplus", num_ws=3).eval()
    out = net(torch.randn(5, 32), torch.randn(5, 32))
    assert out.shape == (5, 3, 16)
    assert net.net[-2].out_features == 48


def test_text_occupies_the_first_columns_of_the_input() -> None:
    net = build(use_batchnorm=False, dropout=0.0).eval()
    with torch.no_grad():
        net.net[0].weight[:, 32:] = 0  # first Linear ignores the spatial half
    text, spatial = torch.randn(4, 32), torch.randn(4, 32)
    base = net(text, spatial)
    torch.testing.assert_close(net(text, torch.randn(4, 32)), base)
    assert not torch.allclose(net(torch.randn(4, 32), spatial), base)


def test_equalized_linear_scales_stored_weights_by_one_over_sqrt_fan_in() -> None:
    layer = EqualizedLinear(9, 4)
    x = torch.randn(3, 9)
    expected = x @ (layer.weight / 3.0).T + layer.bias
    torch.testing.assert_close(layer(x), expected)
    net = build(0, MappingNetCfg(), use_batchnorm=False, dropout=0.0)
    assert net.net[0].weight.std().item() == pytest.approx(1.0, abs=0.02)  # stored N(0, 1)


def test_input_checks_name_the_dimension() -> None:
    net = build()
    with pytest.raises(ValueError, match=r"text must be \(B, 32\)"):
        net(torch.randn(2, 31), torch.randn(2, 32))
    with pytest.raises(ValueError, match="spatial input"):
        net(torch.randn(2, 32))
    with pytest.raises(ValueError, match="batch size B differs"):
        net(torch.randn(2, 32), torch.randn(3, 32))
    text_only = build(spatial_dim=0).eval()
    assert text_only(torch.randn(2, 32)).shape == (2, 16)


def test_bad_configs_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="dropout"):
        MappingNetCfg(dropout=1.0)
    with pytest.raises(ConfigError, match="output"):
        MappingNetCfg(output="s")
    with pytest.raises(ConfigError, match="depth"):
        MappingNetCfg(depth=0)


# ---- official checkpoint -------------------------------------------------------------------

@pytest.fixture(scope="module")
def official_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mm2l") / "epoch=267-loss-l1=0.2001-cos=0.2274.ckpt"
    return write_lightning_checkpoint(path, official_mapping_state())


def test_official_checkpoint_tensors_land_on_the_right_parameters(official_ckpt: Path) -> None:
    state = official_mapping_state()
    net = load_official_mapping_net(official_ckpt)
    assert not net.training
    assert torch.equal(net.net[2].weight, state["map_fn.net.2.weight.weight"])
    assert torch.equal(net.net[24].bias, state["map_fn.net.24.bias"])
    assert torch.equal(net.net[0].running_var, state["map_fn.net.0.running_var"])


def test_changing_one_official_tensor_changes_the_output(
    tmp_path: Path, official_ckpt: Path
) -> None:
    text, spatial = torch.randn(2, 512), torch.randn(2, 512)
    with torch.no_grad():
        base = load_official_mapping_net(official_ckpt)(text, spatial)
        state = official_mapping_state()
        state["map_fn.net.10.weight.weight"][3, 7] += 5.0
        path = write_lightning_checkpoint(tmp_path / "edited.ckpt", state)
        edited = load_official_mapping_net(path)(text, spatial)
    assert not torch.allclose(base, edited)


def test_missing_key_names_the_file_and_key(tmp_path: Path) -> None:
    state = official_mapping_state()
    del state["map_fn.net.12.bias"]
    path = write_lightning_checkpoint(tmp_path / "missing.ckpt", state)
    with pytest.raises(CheckpointError, match=r"missing\.ckpt.*map_fn\.net\.12\.bias"):
        load_official_mapping_net(path)


def test_misshaped_key_reports_expected_and_found(tmp_path: Path) -> None:
    state = official_mapping_state()
    state["map_fn.net.2.weight.weight"] = torch.zeros(512, 512)  # a text-only file
    path = write_lightning_checkpoint(tmp_path / "shape.ckpt", state)
    with pytest.raises(CheckpointError, match=r"net\.2\.weight.*\(512, 512\).*\(512, 1024\)"):
        load_official_mapping_net(path)


def test_truncated_and_foreign_files_are_checkpoint_errors(
    tmp_path: Path, official_ckpt: Path
) -> None:
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(official_ckpt.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated.ckpt"):
        load_official_mapping_net(truncated)
    bare = tmp_path / "bare.pt"
    torch.save(official_mapping_state(), bare)  # a plain state dict, not Lightning's container
    with pytest.raises(CheckpointError, match="state_dict"):
        load_official_mapping_net(bare)


def test_extra_keys_are_refused_by_name(tmp_path: Path) -> None:
    state = official_mapping_state()
    state["loss_fn.dummy"] = torch.zeros(1)
    state["map_fn.net.26.weight.weight"] = torch.zeros(512, 512)  # a 13th Linear: another net
    path = write_lightning_checkpoint(tmp_path / "extra.ckpt", state)
    with pytest.raises(CheckpointError, match=r"loss_fn\.dummy.*map_fn\.net\.26\.weight"):
        load_official_mapping_net(path)


# ---- pseudo text embeddings ----------------------------------------------------------------

def unit_rows(n: int, d: int, seed: int = 0) -> torch.Tensor:
    f = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return f / f.norm(dim=1, keepdim=True)


def test_pseudo_text_is_unit_norm_and_differs_from_f() -> None:
    f = unit_rows(64, 512)
    y = pseudo_text_embedding(f, torch.Generator().manual_seed(1))
    torch.testing.assert_close(y.norm(dim=1), torch.ones(64))
    assert (y - f).norm(dim=1).min() > 0.5


def test_pseudo_text_is_reproducible_with_a_seeded_generator() -> None:
    f = unit_rows(8, 512)
    a = pseudo_text_embedding(f, torch.Generator().manual_seed(7))
    b = pseudo_text_embedding(f, torch.Generator().manual_seed(7))
    c = pseudo_text_embedding(f, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_pseudo_text_cosine_with_f_is_one_over_sqrt_two() -> None:
    # e/|e| is nearly orthogonal to f in 512-d, so y = (f + u)/|f + u| sits at 45 degrees.
    f = unit_rows(4000, 512)
    y = pseudo_text_embedding(f, torch.Generator().manual_seed(2))
    cos = (y * f).sum(dim=1)
    assert cos.mean().item() == pytest.approx(1 / math.sqrt(2), abs=0.003)
    assert cos.std().item() < 0.03


def test_pseudo_text_can_be_disabled_and_rejects_unnormalised_input() -> None:
    f = unit_rows(4, 16)
    assert torch.equal(pseudo_text_embedding(f, None, PseudoTextCfg(enabled=False)), f)
    with pytest.raises(ValueError, match="L2-normalised"):
        pseudo_text_embedding(2 * f, None)


# ---- editing -------------------------------------------------------------------------------

def test_edit_direction_is_zero_for_equal_texts_and_deterministic_in_train_mode() -> None:
    net = build(1)  # left in training mode: Dropout would randomise a naive difference
    f_t, f_p, f_s = torch.randn(3, 32), torch.randn(3, 32), torch.randn(3, 32)
    assert torch.equal(edit_direction(net, f_t, f_t, f_s), torch.zeros(3, 16))
    d1, d2 = edit_direction(net, f_t, f_p, f_s), edit_direction(net, f_t, f_p, f_s)
    assert torch.equal(d1, d2) and d1.abs().sum() > 0
    assert net.training  # mode restored


def test_apply_edit_identity_broadcast_and_rows() -> None:
    w_plus, delta = torch.randn(2, 5, 16), torch.randn(2, 16)
    assert torch.equal(apply_edit(w_plus, delta, 0.0), w_plus)
    edited = apply_edit(w_plus, delta, 2.0)
    torch.testing.assert_close(edited - w_plus, 2.0 * delta[:, None].expand(2, 5, 16))
    partial = apply_edit(w_plus, delta, 2.0, rows=[1, 3])
    assert torch.equal(partial[:, [0, 2, 4]], w_plus[:, [0, 2, 4]])
    torch.testing.assert_close(partial[:, 3], w_plus[:, 3] + 2.0 * delta)
    with pytest.raises(ValueError, match="w_dim is 8"):
        apply_edit(w_plus, torch.randn(8), 1.0)
