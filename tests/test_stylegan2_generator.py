"""StyleGAN2 generator: NVIDIA state-dict layout, latent API, noise modes and input checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mm2latent.errors import ConfigError
from mm2latent.models.stylegan2 import Generator, GeneratorCfg
from mm2latent.presets import GENERATOR_PRESETS
from mm2latent.seeding import seeded_init

TINY = GENERATOR_PRESETS["tiny"]


@pytest.fixture(scope="module")
def gen() -> Generator:
    """Tiny generator with non-zero noise strengths and w_avg, so every input matters."""
    with seeded_init(0):
        g = Generator(TINY).eval()
        with torch.no_grad():
            for name, p in g.named_parameters():
                if name.endswith("noise_strength"):
                    p.fill_(0.5)
            g.mapping.w_avg.normal_()
    return g


def expected_nvidia_keys(cfg: GeneratorCfg) -> dict[str, tuple[int, ...]]:
    """State-dict keys and shapes of NVIDIA's Generator (c_dim=0, skip), from its naming rules."""
    keys: dict[str, tuple[int, ...]] = {"mapping.w_avg": (cfg.w_dim,)}
    for i in range(cfg.mapping_layers):
        keys[f"mapping.fc{i}.weight"] = (cfg.w_dim, cfg.z_dim if i == 0 else cfg.w_dim)
        keys[f"mapping.fc{i}.bias"] = (cfg.w_dim,)
    ch = {r: min(cfg.channel_base // r, cfg.channel_max) for r in cfg.block_resolutions()}
    for r in cfg.block_resolutions():
        p = f"synthesis.b{r}"
        keys[f"{p}.resample_filter"] = (4, 4)
        layers = {"conv1": ch[r]}
        if r == 4:
            keys[f"{p}.const"] = (ch[r], 4, 4)
        else:
            layers = {"conv0": ch[r // 2], "conv1": ch[r]}
        for name, cin in layers.items():
            keys[f"{p}.{name}.weight"] = (ch[r], cin, 3, 3)
            keys[f"{p}.{name}.bias"] = (ch[r],)
            keys[f"{p}.{name}.affine.weight"] = (cin, cfg.w_dim)
            keys[f"{p}.{name}.affine.bias"] = (cin,)
            keys[f"{p}.{name}.noise_strength"] = ()
            keys[f"{p}.{name}.noise_const"] = (r, r)
            keys[f"{p}.{name}.resample_filter"] = (4, 4)
        keys[f"{p}.torgb.weight"] = (cfg.img_channels, ch[r], 1, 1)
        keys[f"{p}.torgb.bias"] = (cfg.img_channels,)
        keys[f"{p}.torgb.affine.weight"] = (ch[r], cfg.w_dim)
        keys[f"{p}.torgb.affine.bias"] = (ch[r],)
    return keys


def test_state_dict_matches_nvidia_layout(gen: Generator) -> None:
    got = {k: tuple(v.shape) for k, v in gen.state_dict().items()}
    assert got == expected_nvidia_keys(TINY)


def test_num_ws_follows_resolution() -> None:
    cfg = GeneratorCfg(z_dim=8, w_dim=8, img_resolution=1024, mapping_layers=1,
                       channel_base=1024, channel_max=4)
    assert Generator(cfg).num_ws == 18  # 17 convs + the last torgb, as in FFHQ 1024


def test_affine_biases_start_at_one(gen: Generator) -> None:
    assert torch.all(Generator(TINY).synthesis.b8.conv0.affine.bias == 1.0)
    assert gen.synthesis.b4.resample_filter.sum().item() == pytest.approx(1.0)


def test_truncation_psi_zero_gives_w_avg(gen: Generator) -> None:
    z = torch.randn(3, TINY.z_dim)
    ws = gen.mapping(z, truncation_psi=0.0)
    torch.testing.assert_close(ws, gen.mapping.w_avg.expand(3, gen.num_ws, -1))


def test_truncation_cutoff_only_moves_first_rows(gen: Generator) -> None:
    z = torch.randn(2, TINY.z_dim)
    full = gen.mapping(z)
    cut = gen.mapping(z, truncation_psi=0.5, truncation_cutoff=3)
    torch.testing.assert_close(cut[:, 3:], full[:, 3:])
    torch.testing.assert_close(cut[:, :3], gen.truncate(full, 0.5)[:, :3])
    assert not torch.allclose(cut[:, :3], full[:, :3])


def test_w_and_broadcast_w_plus_give_same_image(gen: Generator) -> None:
    w = torch.randn(2, TINY.w_dim)
    a = gen.synthesize_from_w(w)
    b = gen.synthesize_from_w(w.unsqueeze(1).repeat(1, gen.num_ws, 1))
    torch.testing.assert_close(a, b)
    assert a.shape == (2, 3, TINY.img_resolution, TINY.img_resolution)


def test_batch_rows_are_independent(gen: Generator) -> None:
    z = torch.randn(3, TINY.z_dim)
    batch = gen(z)
    torch.testing.assert_close(batch[1:2], gen(z[1:2]), rtol=1e-5, atol=1e-5)


def test_batch_split_into_samples_matches_single_images() -> None:
    # At 128 px with 16 channels the last block modulates weights per sample, so the
    # synthesis splits the batch there.
    cfg = dataclasses.replace(TINY, img_resolution=128, channel_base=2048)
    with seeded_init(2):
        g = Generator(cfg).eval()
    w = torch.randn(3, cfg.w_dim)
    batch = g.synthesize_from_w(w)
    for i in range(3):
        torch.testing.assert_close(batch[i : i + 1], g.synthesize_from_w(w[i : i + 1]),
                                   rtol=1e-5, atol=1e-5)


def test_noise_modes(gen: Generator) -> None:
    w = torch.randn(1, TINY.w_dim)
    torch.testing.assert_close(gen.synthesize_from_w(w), gen.synthesize_from_w(w))
    assert not torch.allclose(gen.synthesize_from_w(w), gen.synthesize_from_w(w, noise_mode="none"))
    r1 = gen.synthesize_from_w(w, "random", generator=torch.Generator().manual_seed(1))
    r1b = gen.synthesize_from_w(w, "random", generator=torch.Generator().manual_seed(1))
    r2 = gen.synthesize_from_w(w, "random", generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(r1, r1b)
    assert not torch.allclose(r1, r2)
    with pytest.raises(ValueError, match="noise_mode"):
        gen.synthesize_from_w(w, noise_mode="fixed")


def test_named_affine_weight_changes_output() -> None:
    with seeded_init(1):
        g = Generator(TINY).eval()
    w = torch.randn(1, TINY.w_dim)
    before = g.synthesize_from_w(w)
    sd = g.state_dict()
    sd["synthesis.b8.conv0.affine.weight"] = torch.randn_like(sd["synthesis.b8.conv0.affine.weight"])
    g.load_state_dict(sd)
    assert not torch.allclose(before, g.synthesize_from_w(w))


def test_w_avg_is_not_updated_in_train_mode(gen: Generator) -> None:
    before = gen.mapping.w_avg.clone()
    gen.train()
    try:
        gen(torch.randn(2, TINY.z_dim))
    finally:
        gen.eval()
    torch.testing.assert_close(gen.mapping.w_avg, before)


def test_gradient_reaches_w(gen: Generator) -> None:
    w = torch.randn(1, gen.num_ws, TINY.w_dim, requires_grad=True)
    gen.synthesize_from_w(w).square().mean().backward()
    assert w.grad is not None and torch.all(w.grad.abs().sum(dim=2) > 0)  # every row is used


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda g: g(torch.randn(2, TINY.z_dim + 1)), "dimension 1 must be 64"),
        (lambda g: g.synthesis(torch.randn(1, g.num_ws - 1, TINY.w_dim)), "dimension 1 must be 10"),
        (lambda g: g.synthesize_from_w(torch.randn(1, 3, 5, 64)), "expected 3 dims"),
        (lambda g: g.synthesize_from_w(torch.randn(2, 32)), "dimension 1 must be 64"),
        (lambda g: g.truncate(torch.randn(2, g.num_ws, 16), 0.5), "dimension 2 must be 64"),
    ],
)
def test_bad_shapes_raise_value_error_naming_dimension(gen: Generator, call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(gen)


@pytest.mark.parametrize("field, value", [("img_resolution", 48), ("img_resolution", 2), ("z_dim", 0)])
def test_bad_config_raises_config_error(field: str, value: int) -> None:
    with pytest.raises(ConfigError, match=field):
        Generator(dataclasses.replace(TINY, **{field: value}))


def test_ws_rows_can_be_edited_in_place(gen: Generator) -> None:
    ws = gen.mapping(torch.randn(2, TINY.z_dim))
    ws[:, :2] += 1.0  # a common editing idiom; an expand() view would refuse it
    assert torch.equal(ws[:, 0], ws[:, 2] + 1.0)


def test_cutoff_with_a_single_w_is_an_error(gen: Generator) -> None:
    w = gen.mapping(torch.randn(1, TINY.z_dim))[:, 0]
    with pytest.raises(ValueError, match="cutoff"):
        gen.truncate(w, 0.5, cutoff=4)


def test_bad_config_fails_when_the_preset_is_made() -> None:
    with pytest.raises(ConfigError, match="power of two"):
        dataclasses.replace(TINY, img_resolution=48)
