"""Benchmark inputs without any network: mask merging, captions, pairs, CMMD, bad roots."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from mm2latent.benchmark.captions import parse_captions
from mm2latent.benchmark.cmmd import cmmd, kernel_sum
from mm2latent.benchmark.fixture import NO_CAPTION, write_fixture
from mm2latent.benchmark.masks import ANNOTATION_CLASSES, merge_class_masks
from mm2latent.benchmark.pairs import select_pairs
from mm2latent_core.errors import DatasetError
from storage.celeba import merged_mask, read_captions_file, scan_celebamask


def _square(y0: int, y1: int, x0: int, x1: int, size: int = 512, rgb: bool = False) -> np.ndarray:
    mask = np.zeros((size, size, 3) if rgb else (size, size), np.uint8)
    mask[y0:y1, x0:x1] = 255
    return mask


def test_later_classes_overwrite_earlier_ones_in_celebamask_order():
    # hair (13) over nose (2) over skin (1); cloth (18) over hair; given in scrambled order
    masks = {"cloth": _square(100, 120, 0, 512), "hair": _square(0, 110, 0, 512),
             "nose": _square(50, 200, 200, 300), "skin": _square(0, 512, 0, 512)}
    labels = merge_class_masks(masks)
    assert labels[60, 250] == 13  # hair drawn after nose
    assert labels[150, 250] == 2  # nose drawn after skin
    assert labels[105, 10] == 18  # cloth drawn last
    assert labels[300, 10] == 1
    assert labels.dtype == np.uint8 and labels.shape == (512, 512)


def test_any_non_zero_pixel_counts_even_in_rgb_pngs():
    rgb = _square(10, 20, 10, 20, rgb=True)
    rgb[30, 30, 2] = 1  # a faint blue pixel is still "present"
    labels = merge_class_masks({"hat": rgb})
    assert labels[15, 15] == 14 and labels[30, 30] == 14 and labels[0, 0] == 0


def test_unknown_class_and_wrong_size_are_refused():
    with pytest.raises(DatasetError, match="unknown CelebAMask-HQ class"):
        merge_class_masks({"beard": _square(0, 1, 0, 1)})
    with pytest.raises(DatasetError, match="512x512"):
        merge_class_masks({"skin": np.ones((256, 256), np.uint8)})


def test_fixture_layout_merge_and_cache_keyed_by_the_sources(tmp_path):
    urls = write_fixture(str(tmp_path / "fx"))
    index = scan_celebamask(urls.celebamask, ANNOTATION_CLASSES)
    assert 2000 in index.ids() and 0 in index.ids()
    folder = tmp_path / "fx/CelebAMask-HQ/CelebAMask-HQ-mask-anno"
    assert (folder / "1/02000_skin.png").exists() and (folder / "0/00000_skin.png").exists()
    cache = str(tmp_path / "cache")
    first = merged_mask(index, 2000, cache, merge_class_masks)
    direct = merge_class_masks({n: np.asarray(Image.open(folder / f"1/02000_{n}.png"))
                                for n in index.annotations[2000]})
    np.testing.assert_array_equal(first, direct)
    assert len(os.listdir(cache)) == 1
    # A cached map is used as long as the sources are unchanged...
    np.testing.assert_array_equal(merged_mask(index, 2000, cache, merge_class_masks), first)
    # ...and an edited annotation (new size / mtime) gets a new entry.
    Image.fromarray(np.zeros((512, 512), np.uint8)).save(folder / "1/02000_skin.png")
    changed = scan_celebamask(urls.celebamask, ANNOTATION_CLASSES)
    assert changed.stamp(2000) != index.stamp(2000)
    merged_mask(changed, 2000, cache, merge_class_masks)
    assert len(os.listdir(cache)) == 2


def test_missing_caption_is_reported_and_skipped(tmp_path):
    urls = write_fixture(str(tmp_path / "fx"))
    index = scan_celebamask(urls.celebamask, ANNOTATION_CLASSES)
    captions = parse_captions(read_captions_file(urls.captions), "overall_caption")
    selection = select_pairs(index.ids(), captions, n_pairs=100, seed=0)
    assert selection.missing_captions == NO_CAPTION
    assert NO_CAPTION[0] not in [p.image_id for p in selection.pairs]
    assert len(selection.pairs) == len(index.ids()) - 1


def test_pair_selection_is_deterministic_and_seeded():
    captions = {i: f"caption {i}" for i in range(100)}
    a = select_pairs(range(100), captions, 10, seed=3)
    assert a == select_pairs(list(reversed(range(100))), captions, 10, seed=3)
    assert a.pairs != select_pairs(range(100), captions, 10, seed=4).pairs
    assert [p.image_id for p in a.pairs] == sorted(p.image_id for p in a.pairs)
    assert len({p.noise_seed for p in a.pairs}) == 10


def test_attribute_caption_field():
    raw = json.dumps({"7.jpg": {"overall_caption": "a", "attribute_wise_captions": {"Smiling": "b"}},
                      "8.jpg": {"overall_caption": "c"}}).encode()
    assert parse_captions(raw, "Smiling") == {7: "b"}
    with pytest.raises(DatasetError, match="overall_caption"):
        parse_captions(raw, "Beard")


def _unit(rng: np.random.Generator, n: int, d: int, shift: float = 0.0) -> np.ndarray:
    x = rng.standard_normal((n, d)) + shift
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _direct_cmmd(x: np.ndarray, y: np.ndarray, sigma: float = 10.0) -> float:
    def k(a, b):
        return np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * sigma * sigma))
    return 1000.0 * (k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def test_cmmd_matches_a_direct_numpy_computation_and_blocks_do_not_matter():
    rng = np.random.default_rng(0)
    x, y = _unit(rng, 37, 24), _unit(rng, 53, 24, shift=0.4)
    expected = _direct_cmmd(x, y)
    assert expected > 0.1  # the two sets differ: a real signal, not rounding noise
    one_shot = cmmd(x, y, block=1000)
    assert one_shot == pytest.approx(expected, rel=1e-5)
    for block in (1, 5, 16):
        assert cmmd(x, y, block=block) == pytest.approx(one_shot, rel=1e-6)
    assert cmmd(x, x) == pytest.approx(0.0, abs=1e-6)
    cached = kernel_sum(y)
    assert cmmd(x, y, y_sum=cached) == pytest.approx(one_shot, rel=1e-9)
    assert kernel_sum(x, block=7).total == pytest.approx(kernel_sum(x, x, block=7).total, rel=1e-9)


def test_bad_roots_and_empty_pair_sets_raise_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="CelebAMask-HQ-mask-anno"):
        scan_celebamask(str(tmp_path / "nowhere"), ANNOTATION_CLASSES)
    (tmp_path / "empty/CelebAMask-HQ-mask-anno/0").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no '<k // 2000>"):
        scan_celebamask(str(tmp_path / "empty"), ANNOTATION_CLASSES)
    with pytest.raises(DatasetError, match="captions_hq.json"):
        read_captions_file(str(tmp_path / "captions_hq.json"))
    with pytest.raises(DatasetError, match="empty pair set"):
        select_pairs([1, 2], {3: "x"}, 4, seed=0)
    buffer = io.BytesIO(b"[1, 2]")
    with pytest.raises(DatasetError, match="expected an object"):
        parse_captions(buffer.getvalue(), "overall_caption")


def test_tiny_deployment_parameters_fit_the_flow_and_the_fixture_is_written_once(tmp_path):
    import inspect

    import yaml

    from flows.benchmark import benchmark
    from tasks.benchmark import make_fixture

    with open("prefect.yaml") as f:
        deployments = yaml.safe_load(f)["deployments"]
    tiny = [d for d in deployments if d["entrypoint"] == "flows/benchmark.py:benchmark"]
    assert [d["name"] for d in tiny] == ["tiny"]
    accepted = set(inspect.signature(benchmark.fn).parameters)
    assert set(tiny[0]["parameters"]) <= accepted
    root = str(tmp_path / "fx")
    captions = f"{root}/CelebA-Dialog/captions_hq.json"
    assert make_fixture.fn(root, captions) is True
    before = os.path.getmtime(captions)
    assert make_fixture.fn(root, captions) is False
    assert os.path.getmtime(captions) == before


@pytest.mark.parametrize("preset", ["ffhq", "ffhq-official"])
def test_presets_with_weights_use_the_papers_metric_networks(preset):
    from mm2latent.benchmark.config import BenchmarkCfg

    cfg = BenchmarkCfg("c", "c.json", "r", "o", preset=preset, parser="facer")
    assert cfg.metric_nets().clip_score == "clip.vit-b-32-openai"
    assert cfg.metric_nets().cmmd == "clip.vit-l-14-336-openai"
    assert cfg.metric_nets().parser == "facer.farl-celebm-448"
    tiny = BenchmarkCfg("c", "c.json", "r", "o", preset="tiny")
    assert tiny.metric_nets().clip_score is None and tiny.metric_nets().parser is None
