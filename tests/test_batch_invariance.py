"""mm2latent.batching: a sample's numbers do not depend on its batch nor on the thread count,
and the networks see only the batch's own rows (no padding).

The op-level tests use the paper's widths (512-wide style affines, DECA's 2048-wide regressor,
FaRL's ViT MLP over 197 tokens, the generator's 4x4 convolutions): plain PyTorch on the CPU
rounds these differently by batch size or thread count (benchmarks/batch_invariance.py shows
where on a given machine). The stage-level test runs synth-data's stages on the `ffhq`
architectures with seeded weights (the generator at 64 px keeps every 512-channel layer type).
"""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from open_clip.model import QuickGELU
from open_clip.transformer import ResidualAttentionBlock

from mm2latent import presets
from mm2latent.batching import BatchVariantOpError, batch_invariant, invariant_forward
from mm2latent.models.deca import ffhq_crop_for_deca
from mm2latent import annotation
from mm2latent.synth import stages
from mm2latent.synth.models import build_synth_models

BATCHES = ((0,), (1, 0, 2), tuple(range(17)))  # row 0 alone, in a short batch, in a long one


@contextlib.contextmanager
def threads(n: int):
    """torch's intra-op thread count set to n inside the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def row_results(fn, x: torch.Tensor) -> list[torch.Tensor]:
    """fn's result for x[0] when x[0] is computed in each batch of BATCHES, at 1 and 2 threads."""
    out = []
    for n_threads in (1, 2):
        with threads(n_threads), torch.inference_mode(), batch_invariant():
            for rows in BATCHES:
                batch = x[list(rows)]
                out.append(fn(batch)[rows.index(0)])
    return out


def _conv4x4(weight: torch.Tensor):
    return lambda x: F.conv2d(x, weight, padding=1)


def _ops() -> dict[str, tuple]:
    torch.manual_seed(0)
    block = ResidualAttentionBlock(768, 12, act_layer=QuickGELU, batch_first=True).eval()
    conv = torch.randn(512, 512, 3, 3).contiguous(memory_format=torch.channels_last)
    w2048, w512, to_rgb = torch.randn(1024, 2048), torch.randn(512, 512), torch.randn(1, 512, 3)
    return {
        "linear 512 (style affines)": (lambda x: F.linear(x, w512, torch.ones(512)), torch.randn(17, 512)),
        "linear 2048 (DECA regressor)": (lambda x: F.linear(x, w2048), torch.randn(17, 2048)),
        "matmul (demodulation)": (lambda x: x.square() @ w512.t(), torch.randn(17, 512)),
        "bmm (to-RGB)": (lambda x: torch.baddbmm(torch.ones(1, 1, 3), x, to_rgb.expand(len(x), -1, -1)),
                         torch.randn(17, 16, 512)),
        "conv 3x3 on 4x4 maps": (_conv4x4(conv), torch.randn(17, 512, 4, 4).contiguous(memory_format=torch.channels_last)),
        "conv-transpose from 4x4": (lambda x: F.conv_transpose2d(x, conv, stride=2), torch.randn(17, 512, 4, 4)),
        "conv 1x1 on pooled features": (lambda x: F.conv2d(x, w512[:, :, None, None]), torch.randn(17, 512, 1, 1)),
        "ViT-B block, 197 tokens": (block, torch.randn(17, 197, 768)),
    }


@pytest.mark.parametrize("name", list(_ops()))
def test_each_row_is_the_same_in_any_batch_at_any_thread_count(name):
    fn, x = _ops()[name]
    results = row_results(fn, x)
    assert all(torch.equal(results[0], r) for r in results[1:])


def test_invariant_results_stay_close_to_the_plain_ones():
    # Same maths, another summation order: only the last bits may differ.
    for name, (fn, x) in _ops().items():
        with torch.inference_mode():
            plain = fn(x[:3])
            with batch_invariant():
                routed = fn(x[:3])
        torch.testing.assert_close(routed, plain, rtol=1e-4, atol=1e-4, msg=name)


def test_an_op_without_an_invariant_route_is_refused_by_name():
    with torch.inference_mode(), batch_invariant(), pytest.raises(BatchVariantOpError, match="mv"):
        torch.mv(torch.randn(4, 8), torch.randn(8))


def test_off_the_cpu_path_runs_each_sample_on_its_own(monkeypatch):
    seen = []

    class FakeDevice:
        type = "cuda"

    x = torch.randn(3, 4)
    monkeypatch.setattr(torch.Tensor, "device", property(lambda self: FakeDevice()))
    out = invariant_forward(lambda b: seen.append(b.shape[0]) or b * 2, x)
    monkeypatch.undo()
    assert seen == [1, 1, 1] and torch.equal(out, x * 2)


# ---------------------------------------------------------------------------------------------
# synth-data's stages at the paper's widths


@pytest.fixture(scope="module")
def ffhq_arch_models():
    """synth models of `ffhq` with every network seeded, the generator at 64 px (512 channels)."""
    seeded = {f"{c}_weights": None for c in ("generator", "farl", "parser", "deca", "e4e")}
    preset = dataclasses.replace(presets.PRESETS["ffhq"], name="ffhq-arch-64", **seeded)
    preset = dataclasses.replace(preset, generator=dataclasses.replace(preset.generator, img_resolution=64))
    return build_synth_models(preset, ["mask", "flame", "farl"])


def _annotate(models, indices: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """Every network output of synth-data for samples `indices` (one stage call each)."""
    g, nets = models.generator, models.annotators
    with torch.inference_mode():
        z = stages.latents(0, indices, g.cfg.z_dim)
        w, pixels = stages.generate(g, z, 0.7, 64)
        images01 = annotation.to_float_images(pixels)
        labels, _ = annotation.parse_masks(nets["mask"], images01)
        flame = annotation.embed(nets["flame"].flame159, ffhq_crop_for_deca(images01))
        farl = annotation.embed(nets["farl"].encode_image, images01)
    return dict(w=w, pixels=pixels, mask=labels, flame=flame, farl=farl)


@pytest.fixture(scope="module")
def stage_runs(ffhq_arch_models):
    """Outputs for sample 0 alone and in a batch of 3, at 1 and 2 threads; and the row counts
    the mapping, synthesis and FaRL networks saw in the batch-of-3 runs."""
    g, nets = ffhq_arch_models.generator, ffhq_arch_models.annotators
    seen: dict[str, list[int]] = {}
    watched = (("mapping", g.mapping), ("synthesis", g.synthesis), ("farl", nets["farl"].model.visual))
    hooks = [net.register_forward_pre_hook(
        lambda m, args, name=name: seen.setdefault(name, []).append(args[0].shape[0]))
        for name, net in watched]
    runs = {}
    try:
        for n_threads in (1, 2):
            with threads(n_threads):
                for rows in ((0,), (3, 0, 1)):
                    out = _annotate(ffhq_arch_models, rows)
                    runs[n_threads, rows] = {k: v[rows.index(0)] for k, v in out.items()}
    finally:
        for hook in hooks:
            hook.remove()
    return runs, seen


def test_stages_give_a_sample_the_same_bytes_in_any_batch_and_at_any_thread_count(stage_runs):
    runs, _ = stage_runs
    reference = runs[1, (0,)]
    differing = {run: [k for k in reference if not torch.equal(reference[k], got[k])]
                 for run, got in runs.items()}
    assert all(names == [] for names in differing.values()), differing


def test_networks_see_only_the_rows_of_their_batch(stage_runs):
    # Padding every short batch to 16 rows ran whole networks on 4x the work at batch 4.
    _, seen = stage_runs
    assert seen == {name: [1, 3, 1, 3] for name in ("mapping", "synthesis", "farl")}
