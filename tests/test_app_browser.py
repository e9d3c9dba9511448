"""`mm2latent app` in a real headless Chromium (the OS package, driven by Playwright).

A user's steps: type a caption, upload a mask, press Generate -> the page's image equals
`mm2latent generate` pixel for pixel; upload a photo, text edit, move the beta slider -> the
image changes and equals the matching entry of `mm2latent edit --beta ...`'s strip; upload a
file that is not an image -> the page says so. Screenshots of each step go to tmp_path.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from flows.cli import app as cli
from mm2latent.modalities.palette import COLOURS
from mm2latent.presets import get_preset
from mm2latent.synth import run
from mm2latent.synth.params import SynthDataParams
from mm2latent.training.config import MappingTrainCfg, autoencoder_train_cfg
from mm2latent.training.mapping import mapping_net_cfg
from mm2latent.training.pipeline import autoencoder_run, mapping_run
from mm2latent.training.registry import default_registry_url

PRESET = get_preset("tiny")
CAPTION, TARGET, PIVOT = "a smiling woman with blond hair", "a smiling face", "a face"


def chromium_path() -> str | None:
    """The OS Chromium (MM2LATENT_CHROMIUM overrides), or None."""
    candidates = [os.environ.get("MM2LATENT_CHROMIUM"), shutil.which("chromium"),
                  shutil.which("chromium-browser"), shutil.which("google-chrome")]
    return next((c for c in candidates if c and os.path.exists(c)), None)


pytestmark = pytest.mark.skipif(chromium_path() is None, reason="no Chromium executable found "
                                "(install the OS package: apt-get install chromium; .ci/run does)")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> str:
    """`--models` directory with a mask autoencoder and mask MappingNet trained one epoch on tiny."""
    root = tmp_path_factory.mktemp("app")
    data, runs = str(root / "data"), str(root / "runs")
    params = SynthDataParams(preset="tiny", n_samples=8, samples_per_shard=8, out=data,
                             modalities=("mask", "farl"))
    for shard in run.plan(params):
        run.run_shard(params, shard)
    quick = dict(epochs=1, batch_size=8, val_fraction=0.0)
    registry = default_registry_url(runs)
    autoencoder_run(data, runs, registry, PRESET.mask_ae, autoencoder_train_cfg("mask", **quick))
    mapping_run(data, runs, registry, mapping_net_cfg(PRESET.mapping, "mask"),
                MappingTrainCfg(modality="mask", **quick))
    return runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(runs, tmp_path):
    """`mm2latent app` on a free loopback port, booting while the test runs the CLI; call the
    yielded function to wait until it answers. Stopped by its PID afterwards."""
    port = _free_port()
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-c", "from flows.main import main; main()", "app",
                             "--models", runs, "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> str:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/api/info", timeout=1).read()
                return url
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "server.log").read_text()) from None
                time.sleep(0.2)

    try:
        yield ready
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _shown_pixels(page, selector: str) -> np.ndarray:
    """The pixels the browser decoded for an <img> (drawn to a canvas and read back)."""
    rgba = page.evaluate("""(sel) => { const img = document.querySelector(sel);
        const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;
        const ctx = c.getContext('2d'); ctx.drawImage(img, 0, 0);
        return [c.width, c.height, Array.from(ctx.getImageData(0, 0, c.width, c.height).data)]; }""", selector)
    w, h, values = rgba
    return np.array(values, np.uint8).reshape(h, w, 4)[..., :3]


def _canvas_pixel(page, selector: str, x: int, y: int) -> list[int]:
    return page.evaluate("""([sel, x, y]) => Array.from(document.querySelector(sel).getContext('2d')
        .getImageData(x, y, 1, 1).data).slice(0, 3)""", [selector, x, y])


def _src_pixels(page, selector: str) -> np.ndarray:
    src = page.get_attribute(selector, "src")
    return _decode(base64.b64decode(src.split(",", 1)[1]))


def _cli(*args: str) -> None:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output


def test_generate_edit_and_bad_upload_in_chromium(server, runs, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    mask = np.random.default_rng(0).integers(0, 19, (64, 64), dtype=np.uint8)
    Image.fromarray(mask).save(tmp_path / "mask.png")
    _cli("generate", "--text", CAPTION, "--mask", str(tmp_path / "mask.png"), "--models", runs,
         "--out", str(tmp_path / "cli.png"))
    expected = _decode((tmp_path / "cli.png").read_bytes())
    (tmp_path / "notes.txt").write_text("not an image")
    _cli("edit", str(tmp_path / "cli.png"), "--target", TARGET, "--pivot", PIVOT, "--beta", "0,0.5,1",
         "--models", runs, "--out", str(tmp_path / "strip.png"))
    strip = _decode((tmp_path / "strip.png").read_bytes())  # original | 0 | 0.5 | 1
    url = server()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url)
            expect(page.locator("body[data-ready='1']")).to_have_count(1, timeout=15000)
            expect(page.locator("#note")).to_contain_text("NOT faces")
            page.fill("#gen-caption", CAPTION)
            page.set_input_files("#gen-p-upload", str(tmp_path / "mask.png"))
            page.wait_for_function("document.getElementById('gen-p-canvas').dataset.loads === '1'")
            page.screenshot(full_page=True, path=tmp_path / "1-mask-uploaded.png")
            page.click("#gen-run")
            page.wait_for_function("(document.getElementById('gen-image').src || '').startsWith('data:')")
            page.screenshot(full_page=True, path=tmp_path / "2-generated.png")
            assert np.array_equal(_src_pixels(page, "#gen-image"), expected)
            assert np.array_equal(_shown_pixels(page, "#gen-image"), expected)

            page.click("#tab-edit")
            page.set_input_files("#edit-photo", str(tmp_path / "cli.png"))
            page.wait_for_function("(document.getElementById('edit-reconstruction').src || '').startsWith('data:')")
            page.fill("#edit-target", TARGET)
            page.fill("#edit-pivot", PIVOT)
            page.click("#edit-text")
            page.wait_for_function("(document.getElementById('edit-image').src || '').startsWith('data:')")
            at_one = _src_pixels(page, "#edit-image")
            page.screenshot(full_page=True, path=tmp_path / "3-edited-beta-1.png")
            page.focus("#edit-beta")
            for _ in range(5):  # 1.0 -> 0.5 in steps of 0.1, as a keyboard user would
                page.keyboard.press("ArrowLeft")
            expect(page.locator("#edit-beta-value")).to_have_text("0.5")
            page.wait_for_function("document.getElementById('edit-image').dataset.beta === '0.5'")
            page.screenshot(full_page=True, path=tmp_path / "4-edited-beta-0.5.png")
            at_half = _src_pixels(page, "#edit-image")

            page.click("#tab-generate")
            page.set_input_files("#gen-p-upload", str(tmp_path / "notes.txt"))
            expect(page.locator("#gen-error")).to_contain_text("not an image this app reads")
            page.screenshot(full_page=True, path=tmp_path / "5-not-an-image.png")
            expect(page.locator("#gen-error")).not_to_contain_text("Traceback")

            page.click("#gen-p-palette button[data-id='13']")  # hair
            box = page.locator("#gen-p-canvas").bounding_box()
            cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(cx - 20, cy)
            page.mouse.down()
            page.mouse.move(cx + 20, cy, steps=5)
            page.mouse.up()
            assert _canvas_pixel(page, "#gen-p-canvas", 32, 32) == list(COLOURS[13])  # hair
            page.check("#gen-p-eraser")
            page.mouse.click(cx, cy)
            assert _canvas_pixel(page, "#gen-p-canvas", 32, 32) == [0, 0, 0]
            page.screenshot(full_page=True, path=tmp_path / "6-painted.png")
        finally:
            browser.close()
    r = expected.shape[0]
    assert not np.array_equal(at_half, at_one)
    assert np.array_equal(at_half, strip[:, 2 * r:3 * r])
    assert np.array_equal(at_one, strip[:, 3 * r:4 * r])
