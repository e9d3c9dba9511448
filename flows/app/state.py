"""What the server holds for its lifetime, and the dependency that hands it to each handler."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from flows.app.gate import Gate
from mm2latent.interactive.models import ModelSet
from mm2latent.interactive.sessions import SessionCache
from mm2latent.interactive.uploads import UploadLimits


@dataclass
class AppState:
    """One ModelSet, the upload limits, the gate and the edit sessions."""

    models: ModelSet
    limits: UploadLimits = field(default_factory=UploadLimits)
    gate: Gate = field(default_factory=Gate)
    sessions: SessionCache = field(default_factory=SessionCache)
    dataset: str | None = None   # synth-data dataset whose samples the page offers; None = none


def app_state(request: Request) -> AppState:
    """FastAPI dependency: the AppState the app was created with (app.state.mm2latent)."""
    return request.app.state.mm2latent
