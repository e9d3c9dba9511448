"""Attribute math on fabricated inputs with known answers, and the run's resume and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mm2latent.attributes import deca_source, farl_prompts, farl_source, mask_source, run
from mm2latent.attributes.spec import AttributeBatch
from mm2latent.fabricate.datasets import TINY_DIMS, make_sample, write_dataset, write_shard
from mm2latent.models.face_parser.labels import CELEBAMASK_HQ_CLASSES
from mm2latent.modalities.mask import _decode as decode_mask
from mm2latent_core.errors import ConfigError, DatasetError
from storage.attributes import attributes_url, iter_attribute_shards, read_attribute_shard

ID = {name: k for k, name in enumerate(CELEBAMASK_HQ_CLASSES)}
FARL_DIMS = {**TINY_DIMS, "farl": 512}  # the tiny FaRL tower's width


def test_mask_shares_of_a_known_mask():
    mask = torch.zeros(1, 8, 8, dtype=torch.int64)
    mask[0, :4, :] = ID["skin"]      # 32 pixels
    mask[0, 0, :4] = ID["eye_g"]     # 4 (over skin)
    mask[0, 4, :2] = ID["mouth"]     # 2
    mask[0, 5, :] = ID["hair"]       # 8
    values = mask_source.compute(None, AttributeBatch(np.array([0]), {"mask": mask}))
    assert values["eyeglasses"][0] == pytest.approx(4 / 64)
    assert values["mouth_open"][0] == pytest.approx(2 / 64)
    assert values["hair"][0] == pytest.approx(8 / 64)
    assert values["face"][0] == pytest.approx((28 + 4 + 2) / 64)  # skin + glasses + mouth, not hair
    assert values["foreground"][0] == pytest.approx(42 / 64)
    assert values["share_background"][0] == pytest.approx(22 / 64)
    assert sum(values[f"share_{n}"][0] for n in CELEBAMASK_HQ_CLASSES) == pytest.approx(1.0)
    assert {c.name for c in mask_source.COLUMNS} == set(values)


def _code(head: tuple[float, float, float], jaw: tuple[float, float, float] = (0, 0, 0),
          expression: float = 0.0) -> np.ndarray:
    code = np.zeros((1, 159), dtype=np.float32)  # shape 100, exp 50, pose 6, cam 3
    code[0, 100] = expression
    code[0, 150:153], code[0, 153:156] = head, jaw
    return code


LAYOUT = {"n_shape": 100, "n_exp": 50, "n_pose": 6}


@pytest.mark.parametrize("axis, column", [(1, "yaw_deg"), (0, "pitch_deg"), (2, "roll_deg")])
def test_a_rotation_about_one_axis_is_that_angle_and_no_other(axis, column):
    head = [0.0, 0.0, 0.0]
    head[axis] = math.radians(30)
    values = deca_source.compute(LAYOUT, AttributeBatch(np.array([0]), {"flame": _code(tuple(head))}))
    for name in ("yaw_deg", "pitch_deg", "roll_deg"):
        assert values[name][0] == pytest.approx(30.0 if name == column else 0.0, abs=1e-4)


def test_jaw_opening_and_expression_magnitude():
    code = _code((0, 0, 0), jaw=(math.radians(12), 0, 0), expression=3.0)
    code[0, 101] = 4.0  # expression (3, 4, 0, ...): L2 5
    code[0, 10] = 100.0  # a shape coefficient: not expression
    values = deca_source.compute(LAYOUT, AttributeBatch(np.array([0]), {"flame": code}))
    assert values["jaw_open_deg"][0] == pytest.approx(12.0, abs=1e-4)
    assert values["expression_l2"][0] == pytest.approx(5.0)
    assert values["yaw_deg"][0] == 0.0


def test_zero_shot_probability_is_the_softmax_over_the_prompt_pair():
    present = np.eye(4, dtype=np.float32)[:2]  # attribute a: present prompt e_a, absent e_(a+2)
    absent = np.eye(4, dtype=np.float32)[2:]
    prompts = farl_source.PromptEmbeddings(present, absent, scale=5.0)
    image = np.array([[0.6, 0.0, 0.0, 0.8]], dtype=np.float32)  # unit norm
    p = farl_source.probabilities(image, prompts)
    logits = np.array([[3.0, 0.0], [0.0, 4.0]])  # (attribute, [present, absent])
    softmax = np.exp(logits[:, 0]) / np.exp(logits).sum(axis=1)
    np.testing.assert_allclose(p[0], softmax, rtol=1e-6)
    assert p[0, 0] > 0.9 and p[0, 1] < 0.1


def test_the_prompt_table_covers_the_40_celeba_attributes_once():
    assert len(farl_prompts.PROMPTS) == 40 and len(set(farl_prompts.PROMPTS.values())) == 40
    assert {c.name for c in farl_source.COLUMNS} == set(farl_prompts.PROMPTS)


@pytest.fixture
def dataset(tmp_path):
    url = str(tmp_path / "data")
    write_dataset(url, n_shards=2, per_shard=3, failed={4}, dims=FARL_DIMS)
    return url


def _run(dataset, sources=("mask", "deca"), batch_size=64, **kw):
    plan = run.plan(dataset, sources, batch_size=batch_size, **kw)
    for shard in plan.todo:
        run.run_shard(plan, shard)
    return plan


def test_stored_values_are_those_of_each_sample_and_failed_samples_are_null(dataset):
    _run(dataset, batch_size=2)  # batches cross sample boundaries of the failed sample
    tables = dict(iter_attribute_shards(dataset))
    members, vectors = make_sample(5, dims=FARL_DIMS)
    mask = decode_mask(members["mask.png"])[None]
    expected = mask_source.compute(None, AttributeBatch(np.array([5]), {"mask": mask}))
    deca = deca_source.compute(LAYOUT, AttributeBatch(np.array([5]), {"flame": vectors["flame"][None]}))
    row = tables[1].to_pylist()[2]
    assert row["index"] == 5
    assert row["mask.eyeglasses"] == pytest.approx(float(expected["eyeglasses"][0]))
    assert row["deca.yaw_deg"] == pytest.approx(float(deca["yaw_deg"][0]), rel=1e-5)
    failed = tables[1].to_pylist()[1]
    assert failed["index"] == 4 and failed["mask.hair"] is None and failed["deca.yaw_deg"] is None


def test_values_do_not_depend_on_the_batch_size(dataset, tmp_path):
    plan = _run(dataset, batch_size=1)
    first = {f: [read_attribute_shard(dataset, f, s) for s in (0, 1)] for f in plan.folders()}
    other = str(tmp_path / "other")
    write_dataset(other, n_shards=2, per_shard=3, failed={4}, dims=FARL_DIMS)
    _run(other, batch_size=64)
    for folder, tables in first.items():
        for shard, table in enumerate(tables):
            assert read_attribute_shard(other, folder, shard).equals(table)


def test_a_run_killed_after_one_shard_resumes_with_the_rest_only(dataset, monkeypatch):
    plan = run.plan(dataset, ("mask",))
    run.run_shard(plan, 0)  # then the process dies
    url = attributes_url(dataset, plan.folders()[0], 0)
    before = open(url, "rb").read()
    again = run.plan(dataset, ("mask",))
    assert list(again.todo) == [1]
    run.run_shard(again, 1)
    assert open(url, "rb").read() == before
    assert run.plan(dataset, ("mask",)).todo == {}
    write_shard(dataset, 0, [0, 1, 2])  # same samples, but the shard is rewritten: new tar digest
    assert list(run.plan(dataset, ("mask",)).todo) == [0]


def test_another_prompt_table_writes_a_new_folder_and_keeps_the_old_one(dataset, monkeypatch):
    plan = _run(dataset, ("farl",))
    old = read_attribute_shard(dataset, plan.folders()[0], 0)
    assert 0.0 <= min(old["farl.Eyeglasses"].to_pylist()) and max(old["farl.Male"].to_pylist()) <= 1
    monkeypatch.setitem(farl_prompts.PROMPTS, "Eyeglasses", ("a face with glasses", "a face"))
    changed = _run(dataset, ("farl",))
    assert changed.folders() != plan.folders()
    assert read_attribute_shard(dataset, plan.folders()[0], 0).equals(old)
    with pytest.raises(ConfigError, match="several attributes folders"):
        list(iter_attribute_shards(dataset, sources=["farl"]))


def test_bad_choices_are_refused_before_any_work(dataset, tmp_path):
    with pytest.raises(ConfigError, match="unknown attribute source 'hat'; known: mask, deca, farl"):
        run.plan(dataset, ("hat",))
    with pytest.raises(ConfigError, match="FaRL image embeddings were not made with 'farl.ep64'.*--preset tiny"):
        run.plan(dataset, ("farl",), preset="ffhq")  # no weights needed to refuse
    no_flame = str(tmp_path / "no-flame")
    write_dataset(no_flame, n_shards=1, per_shard=2, dims={"w": 16, "farl": 8})
    with pytest.raises(DatasetError, match="has no 'flame' vectors"):
        run.plan(no_flame, ("deca",))


def test_the_readme_shows_the_prompt_table_the_code_uses():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in farl_prompts.PROMPTS:
            rows[cells[0]] = (cells[1], cells[2])
    assert rows == farl_prompts.PROMPTS


def test_a_rerun_of_a_source_with_tuples_in_its_producer_resumes(dataset):
    """The farl producer holds tuples (prompt pairs), which its JSON descriptor stores as lists."""
    first = _run(dataset, ("farl",))
    again = run.plan(dataset, ("farl",))
    assert again.folders() == first.folders() and again.todo == {}
