"""synth-data's stages at the paper's widths (seeded weights): batch-invariant without padding.

A sample's result must not depend on which samples share its batch (see mm2latent/batching.py
for which kernels change with the batch size). tests/test_synth_pipeline.py checks it end to
end on `tiny`; here each stage runs the ffhq architecture's widths, with only what costs time
without changing the layer types reduced (generator resolution, ViT depth, parser input size),
and is compared byte for byte: one sample alone, in a batch of 3, and (for the generator) in a
batch of 17, above batching.MIN_ROWS. The stages must also never evaluate padding rows: that
is what made a short batch cost a full 16-sample forward pass.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mm2latent.models.clip_towers import ClipEmbedder, clip_config
from mm2latent.models.deca import FlameEncoder, deca_config, ffhq_crop_for_deca
from mm2latent.models.face_parser.bisenet import BiSeNet, bisenet_config
from mm2latent.models.stylegan2.generator import PRESETS, Generator
from mm2latent.seeding import seeded_init
from mm2latent.synth import stages


def _rows_alone_and_in_batches(fn, x: torch.Tensor, batches: tuple[int, ...]) -> None:
    """fn(x[:n])[j] == fn(x[j:j+1]) bitwise for the first 3 rows and every n in batches."""
    alone = [fn(x[j : j + 1]) for j in range(3)]
    for n in batches:
        together = fn(x[:n])
        for j in range(3):
            assert torch.equal(together[j : j + 1], alone[j]), f"row {j} differs in a batch of {n}"


def _count_rows(module: torch.nn.Module) -> list[int]:
    """Batch sizes of every call of `module` from now on (a forward pre-hook records them)."""
    seen: list[int] = []
    module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    return seen


@pytest.fixture(scope="module")
def images01() -> torch.Tensor:
    with seeded_init(7):
        return torch.rand(3, 3, 256, 256)  # (B, 3, H, W) in [0, 1]


@pytest.fixture(scope="module")
def generator() -> Generator:
    # 512 channels and 512-d w as config F; 16 px keeps the 4x4 maps whose convolutions change
    # kernels with the batch size, and the batched low-resolution path after them.
    cfg = dataclasses.replace(PRESETS["ffhq1024"], img_resolution=16)
    with seeded_init(0), torch.no_grad():
        g = Generator(cfg).eval()
        for name, p in g.named_parameters():
            if name.endswith("noise_strength") or (name.endswith(".bias") and "affine" not in name):
                p.normal_(0.0, 0.1)
    return g


@torch.inference_mode()
def test_generate_at_ffhq_widths_is_batch_invariant(generator):
    with seeded_init(1):
        z = torch.randn(17, generator.cfg.z_dim)

    def generate(z_: torch.Tensor) -> torch.Tensor:
        w, pixels = stages.generate(generator, z_, 0.7, 16)
        return torch.cat([w, pixels.flatten(1).float()], dim=1)  # (B, w_dim + S*S*3)

    _rows_alone_and_in_batches(generate, z, (3, 17))


@torch.inference_mode()
def test_stages_never_compute_padding_rows(generator, images01):
    mapping, synthesis = _count_rows(generator.mapping), _count_rows(generator.synthesis)
    stages.generate(generator, torch.zeros(3, generator.cfg.z_dim), 0.7, 16)
    assert sum(mapping) == 3 and sum(synthesis) == 3
    with seeded_init(2):
        deca = FlameEncoder(deca_config("tiny")).eval()
    rows = _count_rows(deca)
    stages.embed(deca.flame159, ffhq_crop_for_deca(images01))
    assert sum(rows) == 3


@torch.inference_mode()
def test_deca_at_official_widths_is_batch_invariant(images01):
    with seeded_init(1):
        deca = FlameEncoder(deca_config("official")).eval()
    crops = ffhq_crop_for_deca(images01)  # (3, 3, 224, 224)
    _rows_alone_and_in_batches(lambda x: stages.embed(deca.flame159, x), crops, (3,))


@torch.inference_mode()
def test_farl_vit_b16_is_batch_invariant(images01):
    # ViT-B/16 widths and 197 tokens; two blocks instead of twelve (each block is the same).
    with seeded_init(2):
        farl = ClipEmbedder(clip_config("farl-b16", vision_layers=2, text_layers=1)).eval()
    _rows_alone_and_in_batches(lambda x: stages.embed(farl.encode_image, x), images01, (3,))


@torch.inference_mode()
def test_bisenet_at_official_widths_is_batch_invariant(images01):
    with seeded_init(3):
        parser = BiSeNet(bisenet_config("official", input_size=256)).eval()

    def parse(x: torch.Tensor) -> torch.Tensor:
        labels, fraction = stages.parse_masks(parser, x)
        return torch.cat([labels.flatten(1).float(), fraction[:, None]], dim=1)  # (B, H*W + 1)

    _rows_alone_and_in_batches(parse, images01, (3,))
