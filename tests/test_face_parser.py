"""Face parsers: label tables by name, BiSeNet checkpoint loading, facer TorchScript wrapper."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mm2latent.errors import CheckpointError, ConfigError
from mm2latent.models.face_parser import (BiSeNet, BiSeNetCfg, FacerFarlCfg,
                                          load_bisenet, load_facer_farl)
from mm2latent.models.face_parser.alignment import (FfhqAlignCfg, ffhq_template_matrix,
                                                    warp_from_template, warp_to_template)
from mm2latent.models.face_parser.labels import (BISENET_CLASSES, BISENET_TO_CELEBAMASK_LUT,
                                                 CELEBAMASK_HQ_CLASSES, FACER_CELEBM_CLASSES,
                                                 FACER_CELEBM_TO_CELEBAMASK_LUT, PALETTE,
                                                 build_lut, colorize)
from mm2latent.presets import BISENET_PRESETS, component_preset
from mm2latent.seeding import seeded_init
from tests.fabricate_parsers import (fabricate_bisenet_state, official_bisenet_shapes,
                                     write_bisenet_checkpoint, write_facer_farl_script)

TINY_WIDTH = 8  # BISENET_PRESETS["tiny"].base_width


def celebamask_name(lut: np.ndarray, source_id: int) -> str:
    return CELEBAMASK_HQ_CLASSES[int(lut[source_id])]


# ---------------------------------------------------------------- label tables


def test_bisenet_lut_maps_every_name_to_the_same_celebamask_name():
    for source_id, name in enumerate(BISENET_CLASSES):
        assert celebamask_name(BISENET_TO_CELEBAMASK_LUT, source_id) == name


def test_facer_lut_follows_farl_training_files():
    # FaRL datasets/celebamask_hq.py: facer label k+1 was trained on the k-th annotation file
    farl_training_files = ("neck", "skin", "cloth", "l_ear", "r_ear", "l_brow", "r_brow", "l_eye",
                           "r_eye", "nose", "mouth", "l_lip", "u_lip", "hair", "eye_g", "hat",
                           "ear_r", "neck_l")
    assert celebamask_name(FACER_CELEBM_TO_CELEBAMASK_LUT, 0) == "background"
    for k, file_class in enumerate(farl_training_files):
        assert celebamask_name(FACER_CELEBM_TO_CELEBAMASK_LUT, k + 1) == file_class


@pytest.mark.parametrize("facer_name,expected", [
    ("rr", "l_ear"), ("lr", "r_ear"), ("rb", "l_brow"), ("lb", "r_brow"), ("re", "l_eye"),
    ("le", "r_eye"), ("face", "skin"), ("imouth", "mouth"), ("eyeg", "eye_g"), ("earr", "ear_r"),
    ("llip", "l_lip"), ("ulip", "u_lip"), ("neck_l", "neck_l"), ("cloth", "cloth")])
def test_facer_names_by_meaning(facer_name, expected):
    source_id = FACER_CELEBM_CLASSES.index(facer_name)
    assert celebamask_name(FACER_CELEBM_TO_CELEBAMASK_LUT, source_id) == expected


def test_luts_are_permutations_and_read_only():
    for lut in (BISENET_TO_CELEBAMASK_LUT, FACER_CELEBM_TO_CELEBAMASK_LUT):
        assert lut.dtype == np.uint8 and sorted(lut.tolist()) == list(range(19))
        with pytest.raises(ValueError):
            lut[0] = 3


def test_build_lut_rejects_unknown_and_duplicate_names():
    with pytest.raises(ValueError, match="eyebrow"):
        build_lut(("background", "eyebrow"))
    with pytest.raises(ValueError, match="same target"):
        build_lut(("background", "skin", "face"), {"face": "skin"})


def test_colorize_uses_one_distinct_colour_per_class():
    labels = np.arange(19, dtype=np.uint8).reshape(1, 19)
    rgb = colorize(labels)
    assert rgb.shape == (1, 19, 3) and rgb.dtype == np.uint8
    assert len({tuple(c) for c in PALETTE}) == 19
    with pytest.raises(ValueError, match="19"):
        colorize(np.array([[19]]))


# ---------------------------------------------------------------- BiSeNet


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return write_bisenet_checkpoint(tmp_path_factory.mktemp("bisenet") / "79999_iter.pth",
                                    width=TINY_WIDTH, seed=1)


@pytest.mark.parametrize("preset", ["official", "tiny"])
def test_bisenet_keys_and_shapes_equal_the_official_layout(preset):
    cfg = component_preset(BISENET_PRESETS, preset)
    ours = {k: tuple(v.shape) for k, v in BiSeNet(cfg).state_dict().items()}
    assert ours == dict(official_bisenet_shapes(cfg.base_width, 19))
    assert "cp.resnet.conv1.weight" in ours and "conv_out.conv.conv.weight" in ours


def test_loaded_tensors_round_trip(tiny_ckpt):
    model = load_bisenet(tiny_ckpt, BISENET_PRESETS["tiny"])
    state = torch.load(tiny_ckpt, weights_only=True)
    for key in ("cp.arm16.conv_atten.weight", "ffm.conv2.weight",
                "cp.resnet.layer3.0.downsample.1.running_var"):
        assert torch.equal(model.state_dict()[key], state[key])
    assert not model.training


def test_parse_shapes_dtypes_and_remap(tiny_ckpt):
    model = load_bisenet(tiny_ckpt, BISENET_PRESETS["tiny"])
    images = torch.rand(2, 3, 40, 48, generator=torch.Generator().manual_seed(0))
    result = model.parse(images)
    assert result.labels.shape == (2, 40, 48) and result.labels.dtype == torch.uint8
    assert result.face_fraction.shape == (2,) and result.face_found().dtype == torch.bool
    logits = model(images)  # (B, 19, H, W) in CelebAMask-HQ order
    assert logits.shape == (2, 19, 40, 48)
    assert torch.equal(logits.argmax(1).to(torch.uint8), result.labels)
    source = model.source_logits(images).argmax(1)
    lut = torch.from_numpy(BISENET_TO_CELEBAMASK_LUT.astype(np.int64))
    assert torch.equal(lut[source].to(torch.uint8), result.labels)


def test_changing_the_main_head_changes_output_but_aux_heads_do_not(tiny_ckpt):
    cfg = BISENET_PRESETS["tiny"]
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    base = load_bisenet(tiny_ckpt, cfg)(images)
    for key, should_change in (("conv_out.conv_out.weight", True), ("cp.arm32.bn_atten.bias", True),
                               ("conv_out16.conv_out.weight", False)):
        state = fabricate_bisenet_state(TINY_WIDTH, seed=1)
        state[key] = state[key] + 0.5
        path = write_bisenet_checkpoint(tiny_ckpt.parent / "edited.pth", state=state)
        changed = not torch.allclose(load_bisenet(path, cfg)(images), base)
        assert changed == should_change, key


def test_missing_key_names_file_and_key(tiny_ckpt):
    state = fabricate_bisenet_state(TINY_WIDTH, seed=1)
    del state["ffm.conv1.weight"]
    path = write_bisenet_checkpoint(tiny_ckpt.parent / "missing.pth", state=state)
    with pytest.raises(CheckpointError, match="ffm.conv1.weight") as info:
        load_bisenet(path, BISENET_PRESETS["tiny"])
    assert str(path) in str(info.value)


def test_misshaped_key_names_key_and_shapes(tiny_ckpt):
    state = fabricate_bisenet_state(TINY_WIDTH, seed=1)
    state["conv_out.conv_out.weight"] = torch.zeros(18, 32, 1, 1)
    path = write_bisenet_checkpoint(tiny_ckpt.parent / "misshaped.pth", state=state)
    shapes = r"conv_out.conv_out.weight.*\(18, 32, 1, 1\).*\(19, 32, 1, 1\)"
    with pytest.raises(CheckpointError, match=shapes):
        load_bisenet(path, BISENET_PRESETS["tiny"])


def test_full_size_file_into_tiny_config_is_a_shape_error(tmp_path):
    path = write_bisenet_checkpoint(tmp_path / "big.pth", width=16)
    with pytest.raises(CheckpointError, match="cp.resnet.conv1.weight"):
        load_bisenet(path, BISENET_PRESETS["tiny"])


def test_truncated_and_wrong_container_files(tiny_ckpt, tmp_path):
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(tiny_ckpt.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="truncated.pth"):
        load_bisenet(truncated, BISENET_PRESETS["tiny"])
    wrapped = tmp_path / "wrapped.pth"
    torch.save([fabricate_bisenet_state(TINY_WIDTH)], wrapped)
    with pytest.raises(CheckpointError, match="plain state_dict"):
        load_bisenet(wrapped, BISENET_PRESETS["tiny"])
    with pytest.raises(CheckpointError, match="does not exist"):
        load_bisenet(tmp_path / "absent.pth")


def test_counters_optional_but_extra_keys_refused(tiny_ckpt):
    state = fabricate_bisenet_state(TINY_WIDTH, seed=1)
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = write_bisenet_checkpoint(tiny_ckpt.parent / "counters.pth", state=state)
    model = load_bisenet(path, BISENET_PRESETS["tiny"])
    assert torch.equal(model.state_dict()["ffm.conv1.weight"], state["ffm.conv1.weight"])
    state["sp.conv1.conv.weight"] = torch.zeros(1)
    path = write_bisenet_checkpoint(tiny_ckpt.parent / "extra.pth", state=state)
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\): sp.conv1.conv.weight"):
        load_bisenet(path, BISENET_PRESETS["tiny"])


def test_tiny_construction_is_seeded():
    with seeded_init(5):
        a = BiSeNet(BISENET_PRESETS["tiny"]).state_dict()
    with seeded_init(5):
        b = BiSeNet(BISENET_PRESETS["tiny"]).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_config_errors_list_valid_choices():
    with pytest.raises(ConfigError, match="official, tiny"):
        component_preset(BISENET_PRESETS, "huge")
    with pytest.raises(ConfigError, match="base_width"):
        component_preset(BISENET_PRESETS, "tiny", width=3)
    with pytest.raises(ConfigError, match="19"):
        BiSeNetCfg(n_classes=11)


def test_input_checks_name_the_problem(tiny_ckpt):
    model = load_bisenet(tiny_ckpt, BISENET_PRESETS["tiny"])
    with pytest.raises(ValueError, match="dim 1"):
        model.parse(torch.rand(1, 4, 32, 32))
    with pytest.raises(ValueError, match="255"):
        model.parse(torch.rand(1, 3, 32, 32) * 255)


# ---------------------------------------------------------------- facer / FaRL


def test_facer_script_loads_and_labels_are_remapped(tmp_path):
    rr, face = FACER_CELEBM_CLASSES.index("rr"), FACER_CELEBM_CLASSES.index("face")
    path = write_facer_farl_script(tmp_path / "farl.pt", left_class=rr, right_class=face)
    parser = load_facer_farl(path)
    result = parser.parse(torch.rand(2, 3, 64, 64))
    assert result.labels.shape == (2, 64, 64) and result.labels.dtype == torch.uint8
    l_ear, skin = CELEBAMASK_HQ_CLASSES.index("l_ear"), CELEBAMASK_HQ_CLASSES.index("skin")
    assert (result.labels[:, :, :32] == l_ear).all() and (result.labels[:, :, 32:] == skin).all()
    assert torch.allclose(result.face_fraction, torch.ones(2))


def test_facer_background_half_gives_face_fraction(tmp_path):
    path = write_facer_farl_script(tmp_path / "farl.pt", left_class=0, right_class=0)
    result = load_facer_farl(path).parse(torch.rand(1, 3, 32, 32))
    assert result.face_fraction.item() == 0.0 and not result.face_found().item()
    path = write_facer_farl_script(tmp_path / "half.pt", left_class=0,
                                   right_class=FACER_CELEBM_CLASSES.index("hair"))
    result = load_facer_farl(path).parse(torch.rand(1, 3, 32, 32))
    assert result.face_fraction.item() == pytest.approx(0.5) and result.face_found().item()


def test_facer_random_script_output_shape(tmp_path):
    parser = load_facer_farl(write_facer_farl_script(tmp_path / "farl.pt", seed=3),
                             FacerFarlCfg(align=FfhqAlignCfg(template_size=64)))
    logits = parser(torch.rand(1, 3, 48, 48))
    assert logits.shape == (1, 19, 48, 48)
    with pytest.raises(ValueError, match="square"):
        parser.parse(torch.rand(1, 3, 48, 40))


def test_facer_wrong_files(tmp_path):
    plain = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(1)}, plain)
    with pytest.raises(CheckpointError, match="state.pt"):
        load_facer_farl(plain)
    eleven = write_facer_farl_script(tmp_path / "lapa.pt", n_classes=11)
    with pytest.raises(CheckpointError, match=r"lapa.pt.*19"):
        load_facer_farl(eleven).parse(torch.rand(1, 3, 32, 32))


# ---------------------------------------------------------------- alignment


def test_ffhq_alignment_is_a_plain_resize():
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    matrix = ffhq_template_matrix(64, 64, FfhqAlignCfg(template_size=32))
    warped = warp_to_template(images, matrix, 32)
    expected = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(warped, expected, atol=1e-5)


def test_face_scale_crops_the_centre_and_back_warp_inverts():
    images = torch.zeros(1, 1, 64, 64)
    images[:, :, 16:48, 16:48] = 1.0
    matrix = ffhq_template_matrix(64, 64, FfhqAlignCfg(template_size=32, face_scale=0.5))
    assert torch.allclose(warp_to_template(images, matrix, 32), torch.ones(1, 1, 32, 32))
    back = warp_from_template(torch.ones(1, 1, 16, 16), matrix, 32, (64, 64))
    assert torch.allclose(back[:, :, 17:47, 17:47], torch.ones(1, 1, 30, 30))
    assert back[:, :, :15].abs().max() == 0 and back[:, :, :, 49:].abs().max() == 0
