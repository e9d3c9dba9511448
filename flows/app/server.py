"""The FastAPI app: JSON endpoints over mm2latent.interactive, and the page in static/.

Every handler runs its model work inside the Gate on a worker thread; an Mm2LatentError
becomes a 4xx JSON {"error": message} the page shows, anything else a 500 with a short
message (the traceback goes to the server log only). Nothing is loaded per request.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from flows.app.gate import BusyError, Gate
from mm2latent_core.errors import ConfigError, Mm2LatentError
from mm2latent.interactive.models import ModelSet
from mm2latent.modalities.palette import palette_json
from mm2latent.interactive.provenance import EditInputs, GenerateInputs, png_data_url, provenance
from mm2latent.interactive.sessions import (SessionCache, render, set_spatial_direction, set_text_direction,
                                            start_session)
from mm2latent.interactive.uploads import (UploadLimits, condition_from_image, condition_from_raw, open_image,
                                           photo_from_image)

logger = logging.getLogger(__name__)


@dataclass
class AppState:
    """What the server holds for its lifetime: one ModelSet, the gate, the edit sessions."""

    models: ModelSet
    limits: UploadLimits = field(default_factory=UploadLimits)
    gate: Gate = field(default_factory=Gate)
    sessions: SessionCache = field(default_factory=SessionCache)
    dataset: str | None = None   # synth-data dataset whose samples the page offers; None = none


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


def create_app(state: AppState) -> FastAPI:
    """The app serving `state`'s models (built once by the caller)."""
    app = FastAPI(title="mm2latent", docs_url=None, redoc_url=None, openapi_url=None)

    async def guarded(fn, *args):
        def locked():
            with state.gate.enter():
                return fn(*args)
        return JSONResponse(await run_in_threadpool(locked))

    @app.exception_handler(Mm2LatentError)
    async def user_error(request: Request, exc: Mm2LatentError):
        return JSONResponse({"error": str(exc)}, status_code=429 if isinstance(exc, BusyError) else 400)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):
        logger.error("request %s failed", request.url.path, exc_info=exc)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}) while handling "
                                      f"{request.url.path}; the server keeps running, details are "
                                      "in its log."}, status_code=500)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return resources.files("flows.app").joinpath("static/index.html").read_text("utf-8")

    @app.get("/api/info")
    def info() -> dict:
        models = state.models
        return {"preset": models.preset.name, "makes_faces": models.preset.makes_faces,
                "modalities": [m for m in models.models if m in models.paintable],
                "size": models.preset.store_size, "palette": palette_json(),
                "max_bytes": state.limits.max_bytes, "max_side": state.limits.max_side,
                "dataset": state.dataset}

    def sample_ref(index: int) -> str:
        if state.dataset is None:
            raise ConfigError("no dataset is offered; restart with --dataset data/tiny to pick samples.")
        return f"{state.dataset}#{index}"

    @app.get("/api/sample")
    async def sample(index: int, modality: str = "mask"):
        def load():
            from mm2latent.conditions import load_condition

            return load_condition(_paintable(state.models, modality), sample_ref(index),
                                  state.models.registry)
        return JSONResponse(_condition_reply(modality, await run_in_threadpool(load)))

    @app.post("/api/sample-photo")
    async def sample_photo(index: int):
        def run():
            from mm2latent.conditions import load_photo

            ref = sample_ref(index)
            return _new_session(state, load_photo(ref), _sha(ref.encode()))
        return await guarded(run)

    @app.post("/api/condition")
    async def condition(request: Request, modality: str = "mask"):
        data = await _body(request, state.limits, modality)

        def decode():
            map_input = state.models.registry.map_input(_paintable(state.models, modality))
            return condition_from_image(open_image(data, state.limits, modality), modality, map_input)
        return JSONResponse(_condition_reply(modality, await run_in_threadpool(decode)))

    @app.post("/api/generate")
    async def generate(req: GenerateRequest):
        def run():
            from mm2latent.input_checks import check_psi

            check_psi(req.psi, "truncation psi")
            array, digest = _painted(state, req.condition)
            model = state.models.model(req.condition.modality)
            image = model.generate([req.caption], array, truncation_psi=req.psi, noise_seed=req.seed)[0].numpy()
            return _image_reply(state, image, GenerateInputs(req.caption, model.modality, digest,
                                                             req.seed, req.psi))
        return await guarded(run)

    @app.post("/api/photo")
    async def photo(request: Request):
        data = await _body(request, state.limits, "photo")

        return await guarded(lambda: _new_session(
            state, photo_from_image(open_image(data, state.limits, "photo")), _sha(data)))

    @app.post("/api/direction")
    async def direction(req: DirectionRequest):
        def run():
            session = state.sessions.get(req.session)
            if (req.target is None) == (req.condition is None):
                raise ConfigError("give either a target caption (text edit) or a target mask / sketch.")
            if req.condition is None:
                set_text_direction(state.models, session, req.target, req.pivot)
            else:
                array, digest = _painted(state, req.condition)
                set_spatial_direction(state.models, session, req.condition.modality, array, digest)
            return _edit_reply(state, session, req.beta)
        return await guarded(run)

    @app.post("/api/render")
    async def rerender(req: RenderRequest):
        return await guarded(lambda: _edit_reply(state, state.sessions.get(req.session), req.beta))

    return app


def _new_session(state: AppState, photo01, digest: str) -> dict:
    session = start_session(state.models, photo01, digest)
    state.sessions.put(session)
    return {"session": session.id, "original": png_data_url(session.photo01),
            "reconstruction": png_data_url(session.reconstruction)}


def _edit_reply(state: AppState, session, beta: float) -> dict:
    from mm2latent.inference import check_beta

    beta = check_beta(beta)
    image = render(state.models, session, beta)  # ConfigError while no direction is chosen
    assert session.direction is not None
    return _image_reply(state, image, EditInputs(session.photo_sha256, beta, session.direction))
