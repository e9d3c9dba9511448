"""DECA E_flame: key layout, strict loading, code slicing and the fixed FFHQ crop."""

from __future__ import annotations

import math

import pytest
import torch

from mm2latent.errors import CheckpointError, ConfigError
from mm2latent.models.deca import (
    DecaCfg,
    FlameEncoder,
    ffhq_crop_for_deca,
    flame_encoder_from_checkpoint,
    load_deca_flame_encoder,
)
from mm2latent.checkpoint_io import expected_shapes
from mm2latent.seeding import seeded_init
from tests.fabricate_encoders import official_deca_shapes, write_deca_checkpoint

TINY = DecaCfg(base_width=8, regressor_width=64)


@pytest.fixture(scope="module")
def ckpt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("deca") / "deca_model.tar"
    return path, write_deca_checkpoint(path, TINY, seed=3)


@pytest.fixture(scope="module")
def model(ckpt_file):
    return load_deca_flame_encoder(ckpt_file[0], TINY)


@pytest.fixture(scope="module")
def faces():
    return torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("cfg", [DecaCfg(), TINY], ids=["official", "tiny"])
def test_key_set_and_shapes_match_the_official_resnet_encoder(cfg):
    shapes = official_deca_shapes(cfg)
    assert expected_shapes(FlameEncoder(cfg)) == shapes
    if cfg == DecaCfg():
        assert shapes["layers.0.weight"] == (1024, 2048)
        assert shapes["layers.2.weight"] == (236, 1024)
        # torchvision ResNet-50 (25,557,032) less its fc (2,049,000) + the 2-layer regressor
        n_params = sum(math.prod(s) for k, s in shapes.items() if "running" not in k
                       and "num_batches" not in k)
        assert n_params == 25_557_032 - 2_049_000 + (2048 * 1024 + 1024) + (1024 * 236 + 236)


def test_known_tensors_round_trip(ckpt_file, model):
    state = ckpt_file[1]["E_flame"]
    torch.testing.assert_close(model.encoder.layer3[2].conv2.weight,
                               state["encoder.layer3.2.conv2.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.encoder.layer1[0].downsample[1].running_var,
                               state["encoder.layer1.0.downsample.1.running_var"], rtol=0, atol=0)
    torch.testing.assert_close(model.layers[2].bias, state["layers.2.bias"], rtol=0, atol=0)
    assert not model.training


def test_legacy_format_loads_the_same_weights(tmp_path, ckpt_file, model, faces):
    path = tmp_path / "legacy.tar"
    write_deca_checkpoint(path, TINY, seed=3, legacy=True)
    with open(path, "rb") as f:
        assert f.read(2) != b"PK"  # not a zip: the pre-1.6 pickle container
    legacy = load_deca_flame_encoder(path, TINY)
    with torch.no_grad():
        torch.testing.assert_close(legacy(faces), model(faces), rtol=0, atol=0)


@pytest.mark.parametrize("key", ["encoder.layer4.2.bn3.weight", "encoder.conv1.weight",
                                 "layers.0.weight"])
def test_changing_one_named_tensor_changes_the_code(ckpt_file, model, faces, key):
    ckpt = {k: dict(v) for k, v in ckpt_file[1].items()}
    ckpt["E_flame"][key] = ckpt["E_flame"][key] + 0.5
    changed = flame_encoder_from_checkpoint(ckpt, "mem", TINY)
    with torch.no_grad():
        assert (changed(faces) - model(faces)).abs().max() > 1e-4


def test_flame159_is_shape_exp_pose_cam_of_the_code(model, faces):
    m = flame_encoder_from_checkpoint({"E_flame": model.state_dict()}, "mem", TINY)
    known = torch.arange(236, dtype=torch.float32)
    with torch.no_grad():
        m.layers[2].weight.zero_()
        m.layers[2].bias.copy_(known)
        code = m.encode(faces)
        f159 = m.flame159(faces)
    want = torch.cat([known[0:100], known[150:200], known[200:206], known[206:209]])
    torch.testing.assert_close(f159, want.expand(2, -1), rtol=0, atol=0)
    torch.testing.assert_close(code.tex[0], known[100:150], rtol=0, atol=0)
    torch.testing.assert_close(code.light[0], known[209:236].reshape(9, 3), rtol=0, atol=0)


def test_missing_key_names_file_and_key(tmp_path, ckpt_file):
    ckpt = {k: dict(v) for k, v in ckpt_file[1].items()}
    del ckpt["E_flame"]["encoder.layer2.3.bn2.running_mean"]
    path = tmp_path / "missing.tar"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="encoder.layer2.3.bn2.running_mean") as err:
        load_deca_flame_encoder(path, TINY)
    assert str(path) in str(err.value)


def test_missing_bn_counter_is_tolerated(ckpt_file, model, faces):
    ckpt = {k: dict(v) for k, v in ckpt_file[1].items()}
    ckpt["E_flame"] = {k: v for k, v in ckpt["E_flame"].items()
                       if not k.endswith("num_batches_tracked")}
    with torch.no_grad():
        torch.testing.assert_close(flame_encoder_from_checkpoint(ckpt, "mem", TINY)(faces),
                                   model(faces), rtol=0, atol=0)


def test_misshaped_key_names_key_and_shapes(tmp_path, ckpt_file):
    ckpt = {k: dict(v) for k, v in ckpt_file[1].items()}
    ckpt["E_flame"]["layers.2.weight"] = torch.zeros(235, 64)
    path = tmp_path / "misshaped.tar"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"layers\.2\.weight.*\(235, 64\).*\(236, 64\)"):
        load_deca_flame_encoder(path, TINY)


def test_official_config_rejects_tiny_file(ckpt_file):
    with pytest.raises(CheckpointError, match=r"encoder\.conv1\.weight.*\(8, 3, 7, 7\)"):
        load_deca_flame_encoder(ckpt_file[0])


def test_loads_from_an_fsspec_url(ckpt_file, model, faces):
    fsspec = pytest.importorskip("fsspec")
    url = "memory://deca-test/deca_model.tar"
    with fsspec.open(url, "wb") as f:
        f.write(ckpt_file[0].read_bytes())
    with torch.no_grad():
        torch.testing.assert_close(load_deca_flame_encoder(url, TINY)(faces), model(faces))


def test_truncated_and_wrong_files(tmp_path, ckpt_file):
    data = ckpt_file[0].read_bytes()
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated") as err:
        load_deca_flame_encoder(truncated, TINY)
    assert str(truncated) in str(err.value)
    wrong = tmp_path / "wrong.pt"
    torch.save({"state_dict": {}}, wrong)
    with pytest.raises(CheckpointError, match="E_flame"):
        load_deca_flame_encoder(wrong, TINY)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_deca_flame_encoder(tmp_path / "absent.tar", TINY)


def test_input_checks_and_config_errors(model):
    with pytest.raises(ValueError, match="height must be 224"):
        model(torch.zeros(1, 3, 256, 224))
    with pytest.raises(ConfigError, match="img_size"):
        DecaCfg(img_size=256)
    with pytest.raises(ConfigError, match="base_width"):
        DecaCfg(base_width=0)


def test_seeded_tiny_build_is_deterministic():
    with seeded_init(7):
        a = FlameEncoder(TINY)
    with seeded_init(7):
        b = FlameEncoder(TINY)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


def test_ffhq_crop_geometry():
    side = 256  # below the antialias threshold: the warp samples the input directly
    ramp = torch.arange(side, dtype=torch.float32)
    img = torch.stack([ramp.expand(side, side), ramp[:, None].expand(side, side),
                       torch.ones(side, side)]).unsqueeze(0)  # ch0 = x, ch1 = y, ch2 = 1
    out = ffhq_crop_for_deca(img)
    assert out.shape == (1, 3, 224, 224)
    half = 0.794 * side / 2
    # top-left output pixel centre = crop corner, in source pixel-index units
    assert out[0, 0, 0, 0].item() == pytest.approx(0.5 * side - 0.5 - half, abs=1e-3)
    assert out[0, 1, 0, 0].item() == pytest.approx(0.668 * side - 0.5 - half, abs=1e-3)
    assert out[0, 0, 0, -1].item() == pytest.approx(0.5 * side - 0.5 + half, abs=1e-3)
    # the crop runs past the bottom edge (chin margin): zero fill there, as DECA's warp
    assert out[0, 2, -1].abs().max() == 0 and out[0, 2, 0].min() == 1
    # horizontally centred: mirrored columns sample mirrored x (rows inside the image)
    inside = out[0, 0, :200]
    torch.testing.assert_close(inside + inside.flip(-1), torch.full_like(inside, side - 1.0))


def test_ffhq_crop_of_large_image_matches_small(faces):
    big = torch.nn.functional.interpolate(faces, size=(1024, 1024), mode="bilinear",
                                          align_corners=False)
    small = torch.nn.functional.interpolate(big, size=(282, 282), mode="bilinear",
                                            align_corners=False, antialias=True)
    torch.testing.assert_close(ffhq_crop_for_deca(big), ffhq_crop_for_deca(small))
