"""The interactive editor's server (flows/app) through HTTP, on seeded tiny models.

Every answer is compared with the library called directly; bad inputs must come back as a
JSON message (never a traceback) and must not disturb the next request.
"""

from __future__ import annotations

import base64
import io
import threading

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from flows.app.gate import BusyError, Gate
from flows.app.server import AppState, create_app
from mm2latent.editing import text_edit
from mm2latent.interactive.models import ModelSet
from mm2latent.modalities.palette import COLOURS
from mm2latent.interactive.uploads import UploadLimits
from mm2latent.presets import get_preset
from tests.fabricate_inference import seeded_model


@pytest.fixture(scope="module")
def model_set() -> ModelSet:
    models = {m: seeded_model(m) for m in ("mask", "sketch")}
    return ModelSet(get_preset("tiny"), models, {m: {f"mapping-{m}": "seeded"} for m in models})


@pytest.fixture
def client(model_set):
    state = AppState(model_set, UploadLimits(max_bytes=200_000, max_side=256))
    with TestClient(create_app(state), raise_server_exceptions=False) as c:
        yield c


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def _decoded(data_url: str) -> np.ndarray:
    raw = base64.b64decode(data_url.split(",", 1)[1])
    with Image.open(io.BytesIO(raw)) as im:
        return np.asarray(im.convert("RGB"))


def _mask(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 19, (64, 64), dtype=np.uint8)


def _painted(array: np.ndarray, modality: str = "mask") -> dict:
    return {"modality": modality, "width": array.shape[1], "height": array.shape[0],
            "data": base64.b64encode(array.tobytes()).decode()}


def test_generate_equals_the_library_and_records_provenance(client, model_set):
    mask = _mask()
    got = client.post("/api/generate", json={"caption": "a face", "condition": _painted(mask), "seed": 3})
    assert got.status_code == 200, got.text
    expected = model_set.models["mask"].generate(["a face"], mask, noise_seed=3)[0].numpy()
    assert np.array_equal(_decoded(got.json()["image"]), expected)
    prov = got.json()["provenance"]
    assert prov["seed"] == 3 and prov["caption"] == "a face" and prov["preset"] == "tiny"
    assert prov["models"] == {"mapping-mask": "seeded"} and prov["makes_faces"] is False


def test_uploaded_label_and_colour_masks_decode_to_the_same_ids(client):
    mask = _mask(1)
    by_ids = client.post("/api/condition?modality=mask", content=_png(mask))
    colours = np.array(COLOURS, np.uint8)[mask]  # (H, W, 3) painted in the palette
    by_colour = client.post("/api/condition?modality=mask", content=_png(colours))
    for got in (by_ids, by_colour):
        assert got.status_code == 200, got.text
        assert np.array_equal(np.frombuffer(base64.b64decode(got.json()["data"]), np.uint8).reshape(64, 64), mask)


@pytest.mark.parametrize("body, modality, message", [
    (b"this is not an image", "mask", "not an image this app reads"),
    (b"", "mask", "upload is empty"),
    (b"\x00" * 300_000, "mask", "MiB limit"),
    (_png(np.zeros((300, 10), np.uint8)), "mask", "limit is 256 px"),
    (_png(np.full((8, 8), 25, np.uint8)), "mask", "must lie in 0..18"),
    (_png(np.full((8, 8, 3), 7, np.uint8)), "mask", "not CelebAMask-HQ class colours"),
    (_png(np.full((8, 8), 128, np.uint8)), "sketch", "only 0 (background) and 255"),
    (_png(np.zeros((8, 8), np.uint8)), "flame", "choose one of mask, sketch"),
])
def test_bad_uploads_get_a_message_not_a_traceback(client, body, modality, message):
    got = client.post(f"/api/condition?modality={modality}", content=body)
    assert got.status_code == 400 and message in got.json()["error"], got.text
    assert "Traceback" not in got.text


def test_bad_painted_mask_and_photo(client):
    bad = _painted(np.full((4, 4), 30, np.uint8))
    got = client.post("/api/generate", json={"caption": "a face", "condition": bad})
    assert got.status_code == 400 and "0..18" in got.json()["error"]
    blank = client.post("/api/generate", json={"caption": " ", "condition": _painted(_mask())})
    assert blank.status_code == 400 and "non-empty string" in blank.json()["error"]
    wide = client.post("/api/photo", content=_png(np.zeros((32, 48, 3), np.uint8)))
    assert wide.status_code == 400 and "does not look FFHQ-aligned" in wide.json()["error"]
    expired = client.post("/api/render", json={"session": "nope", "beta": 1})
    assert expired.status_code == 400 and "upload the photo again" in expired.json()["error"]


def test_beta_rerenders_from_the_cached_inversion_and_equals_the_strip(client, model_set, monkeypatch):
    photo = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    session = client.post("/api/photo", content=_png(photo)).json()["session"]
    first = client.post("/api/direction", json={"session": session, "target": "a smiling face",
                                                "pivot": "a face", "beta": 1.0})
    assert first.status_code == 200, first.text

    def no_inversion(*args, **kwargs):
        raise AssertionError("the slider must not re-run the inversion")

    monkeypatch.setattr(type(model_set.editor), "invert", no_inversion)
    images = {b: _decoded(client.post("/api/render", json={"session": session, "beta": b}).json()["image"])
              for b in (0.0, 0.5, 2.0)}
    monkeypatch.undo()
    photo01 = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
    strip = text_edit(model_set.editor, photo01, "a smiling face", "a face", [0.0, 0.5, 1.0, 2.0])
    for k, beta in enumerate(strip.betas):
        got = _decoded(first.json()["image"]) if beta == 1.0 else images[beta]
        assert np.array_equal(got, strip.images[0, k].numpy()), beta
    assert not np.array_equal(images[0.5], images[2.0])
    nan = client.post("/api/render", json={"session": session, "beta": "NaN"})
    assert nan.status_code in (400, 422) and "Traceback" not in nan.text


def test_a_crash_in_one_request_leaves_the_next_one_working(client, model_set, monkeypatch):
    real = type(model_set.models["mask"]).generate
    calls = []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom inside the network")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(model_set.models["mask"]), "generate", flaky)
    body = {"caption": "a face", "condition": _painted(_mask())}
    crashed = client.post("/api/generate", json=body)
    assert crashed.status_code == 500 and "internal error (RuntimeError)" in crashed.json()["error"]
    assert "boom" not in crashed.text and "Traceback" not in crashed.text
    assert client.post("/api/generate", json=body).status_code == 200


def test_concurrent_good_and_bad_requests_do_not_disturb_each_other(client, model_set):
    good = {"caption": "a face", "condition": _painted(_mask())}
    bad = {"caption": "a face", "condition": _painted(np.full((4, 4), 99, np.uint8))}
    results: dict[int, object] = {}

    def send(i):
        results[i] = client.post("/api/generate", json=good if i % 2 == 0 else bad)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = model_set.models["mask"].generate(["a face"], _mask())[0].numpy()
    for i, res in results.items():
        if i % 2 == 0:
            assert res.status_code == 200 and np.array_equal(_decoded(res.json()["image"]), expected)
        else:
            assert res.status_code == 400 and "0..18" in res.json()["error"]


def test_gate_refuses_beyond_its_queue_with_a_message():
    gate = Gate(max_waiting=1, wait_s=0.1)
    with gate.enter():
        with pytest.raises(BusyError, match="1 requests already waiting"):
            with gate.enter():
                pass
    two = Gate(max_waiting=2, wait_s=0.05)
    held, release = threading.Event(), threading.Event()

    def hold():
        with two.enter():
            held.set()
            release.wait(5)

    worker = threading.Thread(target=hold)
    worker.start()
    held.wait(5)
    with pytest.raises(BusyError, match="waited 0.05 s"):
        with two.enter():
            pass
    release.set()
    worker.join()
    with two.enter():  # free again
        pass


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    from mm2latent.synth import run
    from mm2latent.synth.params import SynthDataParams

    out = str(tmp_path_factory.mktemp("app-data") / "tiny")
    params = SynthDataParams(preset="tiny", n_samples=2, samples_per_shard=2, out=out,
                             modalities=("mask", "sketch"))
    for shard in run.plan(params):
        run.run_shard(params, shard)
    return out


def test_dataset_samples_are_offered_as_conditions_and_photos(model_set, dataset, client):
    from mm2latent.conditions import load_condition, load_photo
    from mm2latent.editing import invert_each, synthesize_each

    state = AppState(model_set, dataset=dataset)
    with TestClient(create_app(state), raise_server_exceptions=False) as c:
        for modality in ("mask", "sketch"):
            got = c.get(f"/api/sample?index=1&modality={modality}").json()
            expected = load_condition(modality, f"{dataset}#1")
            array = np.frombuffer(base64.b64decode(got["data"]), np.uint8).reshape(got["height"], got["width"])
            assert np.array_equal(array, expected)
        photo = c.post("/api/sample-photo?index=1").json()
        image = load_photo(f"{dataset}#1")
        assert np.array_equal(_decoded(photo["reconstruction"]),
                              synthesize_each(model_set.editor, invert_each(model_set.editor, image))[0].numpy())
        missing = c.get("/api/sample?index=99&modality=mask")
        assert missing.status_code == 400 and "no sample 99" in missing.json()["error"]
    none = client.get("/api/sample?index=0&modality=mask")
    assert none.status_code == 400 and "--dataset" in none.json()["error"]


def test_load_model_set_shares_one_generator_and_farl(monkeypatch):
    from mm2latent_core.errors import ConfigError
    from mm2latent.interactive import models as models_module

    def registered(url, modality, modalities=None):
        if modality == "flame":
            raise ConfigError("no 'mapping-flame' model registered")
        made = seeded_model(modality)
        return made.mapping, made.autoencoder, {f"mapping-{modality}": f"mapping-{modality}-v1"}

    built = []
    real_build = models_module.build_component
    monkeypatch.setattr(models_module, "load_registered", registered)
    monkeypatch.setattr(models_module, "build_component", lambda *a: built.append(a[1]) or real_build(*a))
    loaded = models_module.load_model_set("tiny", "unused")
    assert sorted(loaded.models) == ["mask", "sketch"] and sorted(built) == ["farl", "generator"]
    mask, sketch = loaded.models["mask"], loaded.models["sketch"]
    assert mask.generator is sketch.generator and mask.farl is sketch.farl and loaded.editor is mask
    assert loaded.tags["sketch"] == {"mapping-sketch": "mapping-sketch-v1"}
    with pytest.raises(ConfigError, match="no flame MappingNet is loaded"):
        loaded.model("flame")


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_cli_serves_loopback_by_default_and_warns_when_exposed(monkeypatch, model_set, host, warned):
    import uvicorn
    from typer.testing import CliRunner

    from flows.cli import app as cli
    from mm2latent.interactive import models as models_module

    served = {}
    monkeypatch.setattr(models_module, "load_model_set", lambda *a, **k: model_set)
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **k: served.update(host=host, port=port))
    args = ["app", "--models", "runs/x"] + ([] if host == "127.0.0.1" else ["--host", host])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert served == {"host": host, "port": 7860}
    assert ("exposes the app" in result.output) is warned


def test_small_masks_and_wild_psi_are_refused_as_the_cli_refuses_them(client):
    small = client.post("/api/generate", json={"caption": "a face", "condition": _painted(_mask()[:40, :40])})
    assert small.status_code == 400 and "smaller than the 64x64" in small.json()["error"]
    psi = client.post("/api/generate", json={"caption": "a face", "condition": _painted(_mask()), "psi": 9})
    assert psi.status_code == 400 and "truncation psi 9 is outside" in psi.json()["error"]


def _photo_session(client) -> str:
    photo = np.random.default_rng(5).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    got = client.post("/api/photo", content=_png(photo))
    assert got.status_code == 200, got.text
    return got.json()["session"]


@pytest.mark.parametrize("photo, message", [
    (np.full((64, 64), 40000, np.uint16), "not 8-bit RGB or grey"),  # a 16-bit grey PNG
    (np.zeros((4, 4, 3), np.uint8), "4x4 px, smaller than the 64x64"),
])
def test_16_bit_and_tiny_photos_are_refused(client, photo, message):
    got = client.post("/api/photo", content=_png(photo))
    assert got.status_code == 400 and message in got.json()["error"], got.text


@pytest.mark.parametrize("seed", [-1, 2**53, 10**30])
def test_negative_and_huge_seeds_are_refused(client, seed):
    got = client.post("/api/generate", json={"caption": "a face", "condition": _painted(_mask()), "seed": seed})
    assert got.status_code == 400 and "outside 0..9007199254740991" in got.json()["error"], got.text


def test_huge_betas_are_refused_on_both_edit_routes(client):
    session = _photo_session(client)
    direction = client.post("/api/direction", json={"session": session, "target": "a smiling face",
                                                    "beta": 1e6})
    assert direction.status_code == 400 and "outside -10..10" in direction.json()["error"], direction.text
    ok = client.post("/api/direction", json={"session": session, "target": "a smiling face", "beta": -3})
    assert ok.status_code == 200, ok.text
    for beta in (10.5, -1e300):
        got = client.post("/api/render", json={"session": session, "beta": beta})
        assert got.status_code == 400 and "outside -10..10" in got.json()["error"], got.text


def test_each_router_serves_on_its_own(model_set):
    # The routes are named functions on one APIRouter per concern: a bare app with only the
    # generation router answers as the full app does, and the handler runs without HTTP.
    from fastapi import FastAPI

    from flows.app.routes import GenerateRequest, Painted, generate_router, run_generate

    state = AppState(model_set)
    bare = FastAPI()
    bare.state.mm2latent = state
    bare.include_router(generate_router)
    mask = _mask(3)
    with TestClient(bare) as c:
        got = c.post("/api/generate", json={"caption": "a face", "condition": _painted(mask), "seed": 1})
        assert c.get("/api/info").status_code == 404  # not mounted here
    direct = run_generate(state, GenerateRequest(caption="a face", condition=Painted(**_painted(mask)), seed=1))
    assert got.status_code == 200 and got.json()["image"] == direct["image"]
