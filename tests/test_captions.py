"""Templated captions: facts from known attributes, seeded phrasing, storage and resume."""

from __future__ import annotations

import numpy as np
import pytest

from mm2latent.attributes import run as attributes_run
from mm2latent.captions import run
from mm2latent.captions.embeddings import (build_text_tower, captions_version, encode_captions,
                                           read_text_embeddings)
from mm2latent.captions.templates import FACTS, caption
from mm2latent.fabricate.datasets import write_dataset, write_shard
from mm2latent_core.errors import DatasetError
from storage.captions import caption_dirs, read_caption_shard

WOMAN = {"farl.Male": 0.1, "farl.Bangs": 0.9, "farl.Eyeglasses": 0.8, "farl.No_Beard": 0.95,
         "farl.Smiling": 0.7, "farl.Young": 0.2, "farl.Wearing_Hat": 0.1, "deca.yaw_deg": -35.0}


def test_a_caption_states_each_known_fact_once_with_the_right_subject():
    text = caption(WOMAN, seed=0, index=7)
    assert text.startswith("This woman ")
    sentences = text.split(". ")
    assert len(sentences) == 6  # bangs, glasses, beard, smile, age, pose (no hat: nothing said)
    assert all(s.split()[0] in ("She", "This", "There") for s in sentences)
    assert "bangs" in text or "fringe" in text
    assert "turns her head to the side" in text
    assert "hat" not in text and "young" not in text.replace("not young", "")


def test_phrasing_depends_only_on_seed_and_index():
    assert caption(WOMAN, 0, 7) == caption(dict(reversed(WOMAN.items())), 0, 7)
    variants = {caption(WOMAN, 0, i) for i in range(40)} | {caption(WOMAN, s, 7) for s in range(40)}
    assert len(variants) > 10  # the phrasing varies across samples and seeds


def test_mask_cues_stand_in_when_there_are_no_zero_shot_scores():
    assert caption({"mask.eyeglasses": 0.02, "mask.mouth_open": 0.0}, 0, 1).split(". ")[0] in (
        "The person wears eyeglasses", "The person is wearing glasses")
    assert caption({}, 0, 1) == "A face."
    assert all(f.columns for f in FACTS)


def _attributes(url: str) -> None:
    plan = attributes_run.plan(url, ("mask", "deca"))
    for shard in plan.todo:
        attributes_run.run_shard(plan, shard)


def test_captions_are_stored_per_shard_resume_and_refuse_stale_attributes(tmp_path):
    url = str(tmp_path / "data")
    write_dataset(url, n_shards=2, per_shard=3, failed={4})
    with pytest.raises(DatasetError, match="no attributes.*dataset attributes"):
        run.plan(url)
    _attributes(url)
    plan = run.plan(url, seed=3)
    assert plan.todo == (0, 1)
    tower = build_text_tower(url)
    run.run_shards(plan, [0], tower)  # then the process dies
    resumed = run.plan(url, seed=3)
    assert resumed.folder == plan.folder and resumed.todo == (1,)
    run.run_shards(resumed, resumed.todo, tower)
    rows = read_caption_shard(url, plan.folder, 1).to_pylist()
    assert [r["index"] for r in rows] == [3, 4, 5] and rows[1]["caption"] is None
    assert rows[0]["template_version"] == "1" and rows[0]["caption"].startswith("The person")
    index, text = read_text_embeddings(url, captions_version(url), (0, 1))
    assert index.tolist() == [0, 1, 2, 3, 5]  # the captioned (ok) samples
    np.testing.assert_allclose(text[3], encode_captions(tower, [rows[0]["caption"]])[0], atol=1e-6)
    assert run.plan(url, seed=4).folder != plan.folder  # another seed: its own folder
    assert len(caption_dirs(url)) == 2
    write_shard(url, 1, [3, 4, 5])  # shard rewritten: its attributes are stale now
    with pytest.raises(DatasetError, match="stale.*rerun `mm2latent dataset attributes"):
        run.run_shards(run.plan(url, seed=3), [1], tower)
