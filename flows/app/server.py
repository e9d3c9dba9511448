"""The FastAPI app: JSON endpoints over mm2latent.interactive, and the page in static/.

The endpoints live in flows/app/routes.py, one APIRouter per concern; this module assembles
them with the error rule: an Mm2LatentError becomes a 4xx JSON {"error": message} the page
shows (429 when the gate is full), anything else a 500 with a short message (the traceback goes
to the server log only). Nothing is loaded per request.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from flows.app.gate import BusyError
from flows.app.routes import ROUTERS
from flows.app.state import AppState
from mm2latent_core.errors import Mm2LatentError

__all__ = ["AppState", "create_app"]

logger = logging.getLogger(__name__)


async def user_error(request: Request, exc: Mm2LatentError) -> JSONResponse:
    """A user's mistake (or a full queue): its one-line message, 400 (429 for BusyError)."""
    return JSONResponse({"error": str(exc)}, status_code=429 if isinstance(exc, BusyError) else 400)


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug: logged with its traceback; the page gets a short message and status 500."""
    logger.error("request %s failed", request.url.path, exc_info=exc)
    return JSONResponse({"error": f"internal error ({type(exc).__name__}) while handling "
                                  f"{request.url.path}; the server keeps running, details are "
                                  "in its log."}, status_code=500)


def create_app(state: AppState) -> FastAPI:
    """The app serving `state`'s models (built once by the caller)."""
    app = FastAPI(title="mm2latent", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.mm2latent = state
    app.add_exception_handler(Mm2LatentError, user_error)
    app.add_exception_handler(Exception, server_error)
    for router in ROUTERS:
        app.include_router(router)
    return app
