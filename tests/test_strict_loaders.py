"""Every weight loader loads exactly the network its file holds: no key missing, none left over.

The architecture is inferred from the file, then every key of that architecture is required
and any other key is an error that lists it (not a warning). Also: a file that the safe
loader refuses because of a global names that global and calls the file possibly unsafe.
"""

from __future__ import annotations

import fractions
import re

import pytest
import torch

from mm2latent.checkpoint_io import read_torch_checkpoint
from mm2latent.errors import CheckpointError
from mm2latent.models.clip_loaders import load_farl, load_openai_clip
from mm2latent.models.deca import DecaCfg, load_deca_flame_encoder
from mm2latent.models.e4e import load_e4e_encoder
from mm2latent.models.stylegan2.checkpoints import (load_e4e_decoder, load_generator,
                                                    load_nvidia_pickle, load_rosinality)
from mm2latent.models.stylegan2.generator import Generator, GeneratorCfg
from mm2latent.presets import CLIP_PRESETS, E4E_PRESETS
from mm2latent.seeding import seeded_init
from tests.fabricate_clip import openai_clip_shapes, random_state, write_farl_pth
from tests.fabricate_encoders import deca_checkpoint, e4e_checkpoint
from tests.fabricate_stylegan2 import (nvidia_init_kwargs, rosinality_state_dict, write_e4e_pt,
                                       write_nvidia_pickle)

# 32 px, 4 mapping layers: to_rgbs.0 (8 px) ... to_rgbs.2 (32 px)
CFG = GeneratorCfg(z_dim=16, w_dim=16, img_resolution=32, mapping_layers=4, channel_base=256,
                   channel_max=16, conv_clamp=None)
CLIP_TINY = CLIP_PRESETS["tiny"]


@pytest.fixture(scope="module")
def G() -> Generator:
    with seeded_init(0):
        return Generator(CFG).eval()


def _save_rosinality(path, sd, G):
    torch.save({"g_ema": sd, "latent_avg": G.mapping.w_avg.detach().clone()}, path)
    return path


@pytest.mark.parametrize("dropped", ["style.4.weight", "style.4.bias", "to_rgbs.2.conv.weight",
                                     "to_rgbs.2.bias", "noises.noise_6", "convs.5.conv.weight"])
def test_rosinality_file_lacking_one_key_is_refused_not_shrunk(G, tmp_path, dropped):
    # Before: one missing mapping or last-block key made a 3-layer or 16 px network load,
    # with the orphaned keys only logged.
    sd = rosinality_state_dict(G)
    del sd[dropped]
    path = _save_rosinality(tmp_path / "g.pt", sd, G)
    with pytest.raises(CheckpointError, match=r"missing 1 key\(s\): " + re.escape(dropped)):
        load_rosinality(path)


def test_rosinality_left_over_key_is_an_error(G, tmp_path):
    sd = rosinality_state_dict(G)
    sd["convs.0.conv.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\): convs\.0\.conv\.extra"):
        load_generator(_save_rosinality(tmp_path / "g.pt", sd, G))


def test_complete_rosinality_file_still_loads(G, tmp_path):
    loaded = load_rosinality(_save_rosinality(tmp_path / "g.pt", rosinality_state_dict(G), G))
    assert loaded.cfg.mapping_layers == 4 and loaded.cfg.img_resolution == 32


def test_e4e_decoder_lacking_a_key_names_it_with_its_prefix(G, tmp_path):
    path = tmp_path / "e4e.pt"
    write_e4e_pt(path, G)
    ckpt = torch.load(path, weights_only=False)
    del ckpt["state_dict"]["decoder.to_rgbs.2.conv.modulation.bias"]
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"decoder\.to_rgbs\.2\.conv\.modulation\.bias"):
        load_e4e_decoder(path)
    ckpt = torch.load(tmp_path.joinpath("e4e.pt"), weights_only=False)
    ckpt["state_dict"]["face_pool.weight"] = torch.zeros(1)  # neither encoder nor decoder
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\): face_pool\.weight"):
        load_e4e_decoder(path)


def test_nvidia_pickle_with_tensors_beyond_its_init_kwargs_is_refused(G, tmp_path):
    path = tmp_path / "ffhq.pkl"  # init kwargs say 3 mapping layers, the tensors hold 4
    write_nvidia_pickle(path, G, nvidia_init_kwargs(CFG, mapping_kwargs={"num_layers": 3}))
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\): mapping\.fc3\.bias, "
                                              r"mapping\.fc3\.weight"):
        load_nvidia_pickle(path)


E4E_TINY = E4E_PRESETS["tiny"]
DECA_TINY = DecaCfg(base_width=8, regressor_width=64)


@pytest.mark.parametrize("build,entry,key,load", [
    (lambda: e4e_checkpoint(E4E_TINY), "state_dict", "encoder.styles.99.linear.weight",
     lambda p: load_e4e_encoder(p, E4E_TINY)),
    (lambda: e4e_checkpoint(E4E_TINY), "state_dict", "discriminator.0.weight",
     lambda p: load_e4e_encoder(p, E4E_TINY)),
    (lambda: deca_checkpoint(DECA_TINY), "E_flame", "extra_head.weight",
     lambda p: load_deca_flame_encoder(p, DECA_TINY)),
], ids=["e4e-encoder-key", "e4e-foreign-module", "deca"])
def test_encoder_left_over_keys_are_errors(tmp_path, build, entry, key, load):
    ckpt = build()
    ckpt[entry][key] = torch.zeros(1)
    torch.save(ckpt, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\): .*" + re.escape(key)):
        load(tmp_path / "ckpt.pt")


def test_farl_accepts_only_its_documented_extras(tmp_path):
    path = tmp_path / "farl.pth"
    state = write_farl_pth(path, CLIP_TINY, with_mim_keys=True)
    assert load_farl(path, CLIP_TINY).extra_keys  # the MIM head: accepted and reported
    state["visual.proj_extra"] = torch.zeros(1)
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\): visual\.proj_extra"):
        load_farl(path, CLIP_TINY)


def test_openai_clip_left_over_or_missing_block(tmp_path):
    state = random_state(openai_clip_shapes(CLIP_TINY), 0)
    torch.save(dict(state, **{"visual.extra.weight": torch.zeros(1)}), tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"unexpected key\(s\): visual\.extra\.weight"):
        load_openai_clip(tmp_path / "extra.pt")
    # a whole block missing in the middle: before, the blocks were counted and a shallower
    # network was built
    gap = {k: v for k, v in state.items() if not k.startswith("transformer.resblocks.0.")}
    torch.save(gap, tmp_path / "gap.pt")
    with pytest.raises(CheckpointError, match=r"missing \d+ key\(s\): transformer\.resblocks\.0\."):
        load_openai_clip(tmp_path / "gap.pt")


@pytest.mark.parametrize("loader", [read_torch_checkpoint, load_rosinality, load_e4e_encoder])
def test_refused_global_is_named_and_not_called_corruption(tmp_path, loader):
    path = tmp_path / "odd.pt"
    torch.save({"g_ema": {"x": torch.zeros(1)}, "scale": fractions.Fraction(1, 3)}, path)
    with pytest.raises(CheckpointError) as info:
        loader(path)
    message = str(info.value)
    assert "fractions.Fraction" in message and "may be unsafe" in message
    assert "corrupt" not in message and "download" not in message
    assert "weights_only" not in message
