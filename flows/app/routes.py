"""The app's endpoints: one APIRouter per concern, each handler a named module-level function.

Handlers read the server's AppState through the `app_state` dependency, so a test can mount a
single router on a bare FastAPI app, or call a handler's `run` helper directly. Model work runs
inside the Gate on a worker thread (`_guarded`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from importlib import resources
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from flows.app.state import AppState, app_state
from mm2latent_core.errors import ConfigError
from mm2latent.interactive.limits import check_seed, check_slider_beta
from mm2latent.interactive.models import ModelSet
from mm2latent.modalities.palette import palette_json
from mm2latent.interactive.provenance import EditInputs, GenerateInputs, png_data_url, provenance
from mm2latent.interactive.sessions import (EditSession, render, set_spatial_direction,
                                            set_text_direction, start_session)
from mm2latent.interactive.uploads import (UploadLimits, condition_from_image, condition_from_raw,
                                           open_image, photo_from_image)

State = Depends(app_state)


class Painted(BaseModel):
    """A mask / sketch painted or loaded in the page: H * W bytes, base64."""

    modality: str
    width: int
    height: int
    data: str


class GenerateRequest(BaseModel):
    caption: str
    condition: Painted
    seed: int | None = None      # None = the generator's constant noise, as `generate --n 1`
    psi: float = 1.0


class DirectionRequest(BaseModel):
    session: str
    target: str | None = None    # text edit: target caption
    pivot: str = "a face"
    condition: Painted | None = None  # spatial edit: the target mask / sketch
    beta: float = 1.0


class RenderRequest(BaseModel):
    session: str
    beta: float


async def _guarded(state: AppState, fn: Callable[[], Any]) -> JSONResponse:
    """fn() on a worker thread while holding the gate (one model computation at a time)."""
    def locked():
        with state.gate.enter():
            return fn()
    return JSONResponse(await run_in_threadpool(locked))


async def _body(request: Request, limits: UploadLimits, what: str) -> bytes:
    """The raw upload, refused once it passes the size limit (never read whole first)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.max_bytes:
            raise ConfigError(f"the {what} upload is larger than the {limits.max_bytes / 2**20:.1f} MiB "
                              "limit. Fix: upload a smaller PNG or JPEG.")
        chunks.append(chunk)
    return b"".join(chunks)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _paintable(models: ModelSet, modality: str) -> str:
    if modality not in models.paintable:
        raise ConfigError(f"modality {modality!r} cannot be painted or uploaded here; choose one of "
                          f"{', '.join(models.paintable)}.")
    return modality


def _condition_reply(modality: str, array) -> dict:
    """The page's form of a condition: H * W uint8 values, base64."""
    array = np.ascontiguousarray(array, np.uint8)  # (H, W)
    return {"modality": modality, "width": array.shape[1], "height": array.shape[0],
            "data": base64.b64encode(array.tobytes()).decode()}


def _painted(state: AppState, painted: Painted):
    map_input = state.models.registry.map_input(_paintable(state.models, painted.modality))
    array = condition_from_raw(painted.data, painted.width, painted.height, painted.modality,
                               map_input, state.limits)
    return array, _sha(array.tobytes())


def _image_reply(state: AppState, image, inputs: GenerateInputs | EditInputs) -> dict:
    return {"image": png_data_url(image),
            "provenance": provenance(state.models, inputs, image).to_json()}


def _sample_ref(state: AppState, index: int) -> str:
    if state.dataset is None:
        raise ConfigError("no dataset is offered; restart with --dataset data/tiny to pick samples.")
    return f"{state.dataset}#{index}"


# --- the page and what it needs to draw itself ------------------------------------------------
page_router = APIRouter()


@page_router.get("/", response_class=HTMLResponse)
def page() -> str:
    """The editor's single HTML page (package data)."""
    return resources.files("flows.app").joinpath("static/index.html").read_text("utf-8")


@page_router.get("/api/info")
def info(state: AppState = State) -> dict:
    """Preset, paintable modalities, palette and upload limits for the page."""
    models = state.models
    return {"preset": models.preset.name, "makes_faces": models.preset.makes_faces,
            "modalities": [m for m in models.models if m in models.paintable],
            "size": models.preset.store_size, "palette": palette_json(),
            "max_bytes": state.limits.max_bytes, "max_side": state.limits.max_side,
            "dataset": state.dataset}


# --- conditions: uploaded, or a dataset sample's ----------------------------------------------
condition_router = APIRouter()


@condition_router.get("/api/sample")
async def sample(index: int, modality: str = "mask", state: AppState = State) -> JSONResponse:
    """A dataset sample's mask / sketch, as the page paints it."""
    def load():
        from mm2latent.conditions import load_condition

        return load_condition(_paintable(state.models, modality), _sample_ref(state, index),
                              state.models.registry)
    return JSONResponse(_condition_reply(modality, await run_in_threadpool(load)))


@condition_router.post("/api/condition")
async def condition(request: Request, modality: str = "mask", state: AppState = State) -> JSONResponse:
    """An uploaded label-id / colour mask PNG or sketch, checked and returned as the page paints it."""
    data = await _body(request, state.limits, modality)

    def decode():
        map_input = state.models.registry.map_input(_paintable(state.models, modality))
        return condition_from_image(open_image(data, state.limits, modality), modality, map_input)
    return JSONResponse(_condition_reply(modality, await run_in_threadpool(decode)))


# --- generation ---------------------------------------------------------------------------------
generate_router = APIRouter()


def run_generate(state: AppState, req: GenerateRequest) -> dict:
    """The generated image and its provenance (checks the seed, psi and condition first)."""
    from mm2latent.input_checks import check_psi

    check_psi(req.psi, "truncation psi")
    seed = check_seed(req.seed)
    array, digest = _painted(state, req.condition)
    model = state.models.model(req.condition.modality)
    image = model.generate([req.caption], array, truncation_psi=req.psi, noise_seed=seed)[0].numpy()
    return _image_reply(state, image, GenerateInputs(req.caption, model.modality, digest, seed, req.psi))


@generate_router.post("/api/generate")
async def generate(req: GenerateRequest, state: AppState = State) -> JSONResponse:
    """Caption + painted condition -> image."""
    return await _guarded(state, lambda: run_generate(state, req))


# --- editing: a photo's session, its direction, the beta slider ---------------------------------
edit_router = APIRouter()


def new_session(state: AppState, photo01, digest: str) -> dict:
    """Invert the photo once and keep the session; the original and its reconstruction."""
    session = start_session(state.models, photo01, digest)
    state.sessions.put(session)
    return {"session": session.id, "original": png_data_url(session.photo01),
            "reconstruction": png_data_url(session.reconstruction)}


def edit_reply(state: AppState, session: EditSession, beta: float) -> dict:
    """The session's edit at `beta` (checked against the editor's range) and its provenance."""
    beta = check_slider_beta(beta)
    image = render(state.models, session, beta)  # ConfigError while no direction is chosen
    assert session.direction is not None
    return _image_reply(state, image, EditInputs(session.photo_sha256, beta, session.direction))


def run_direction(state: AppState, req: DirectionRequest) -> dict:
    """Set a text or spatial direction on the session, then render it at req.beta."""
    session = state.sessions.get(req.session)
    if (req.target is None) == (req.condition is None):
        raise ConfigError("give either a target caption (text edit) or a target mask / sketch.")
    check_slider_beta(req.beta)  # before the direction's work, not after it
    if req.condition is None:
        set_text_direction(state.models, session, req.target, req.pivot)
    else:
        array, digest = _painted(state, req.condition)
        set_spatial_direction(state.models, session, req.condition.modality, array, digest)
    return edit_reply(state, session, req.beta)


@edit_router.post("/api/photo")
async def photo(request: Request, state: AppState = State) -> JSONResponse:
    """An uploaded photo: 8-bit, square, at least e4e's input size; starts an edit session."""
    data = await _body(request, state.limits, "photo")
    min_side = state.models.preset.e4e.input_size
    return await _guarded(state, lambda: new_session(
        state, photo_from_image(open_image(data, state.limits, "photo"), min_side), _sha(data)))


@edit_router.post("/api/sample-photo")
async def sample_photo(index: int, state: AppState = State) -> JSONResponse:
    """A dataset sample's image as the photo of a new edit session."""
    def run():
        from mm2latent.conditions import load_photo

        ref = _sample_ref(state, index)
        return new_session(state, load_photo(ref), _sha(ref.encode()))
    return await _guarded(state, run)


@edit_router.post("/api/direction")
async def direction(req: DirectionRequest, state: AppState = State) -> JSONResponse:
    """Choose the edit (target caption, or target mask / sketch) and render it."""
    return await _guarded(state, lambda: run_direction(state, req))


@edit_router.post("/api/render")
async def rerender(req: RenderRequest, state: AppState = State) -> JSONResponse:
    """Re-render the chosen edit at a new beta from the cached inversion."""
    return await _guarded(state, lambda: edit_reply(state, state.sessions.get(req.session), req.beta))


ROUTERS = (page_router, condition_router, generate_router, edit_router)
