"""Exception hierarchy: every error the library raises on bad input is an Mm2LatentError.

The CLI turns these into a short message and exit code 2; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import re


class Mm2LatentError(Exception):
    """Base class: a problem with the user's input, config, files or environment."""


class ConfigError(Mm2LatentError, ValueError):
    """A config value or preset is invalid (unknown key, bad range, unknown preset)."""


class ParameterError(Mm2LatentError):
    """A run's parameters are invalid (one message naming every bad field and its fix).

    Deliberately not a ValueError: pydantic re-wraps ValueErrors raised while it validates, but
    lets this one through unchanged, so the CLI, a direct flow call and Prefect's own check of a
    deployment's parameters all stop with this same message.
    """


class CheckpointError(Mm2LatentError):
    """A weights file is unreadable, of the wrong format, or has missing/misshaped tensors."""

    def __init__(self, path: object, problem: str, fix: str = "") -> None:
        self.path = str(path)
        self.problem = problem
        message = f"{self.path}: {problem}"
        if fix:
            message += f" {fix}"
        super().__init__(message)


class UnknownWeightsError(Mm2LatentError, KeyError):
    """A weights name is not in the registry."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class MissingWeightsError(Mm2LatentError, FileNotFoundError):
    """A registered weights file is not in the cache; nothing downloads it implicitly."""


class WeightsIntegrityError(Mm2LatentError):
    """A weights file's sha256 or size does not match the registry."""


class DownloadError(Mm2LatentError):
    """A weights download failed (network, HTTP status, interrupted transfer)."""


class DatasetError(Mm2LatentError):
    """A dataset is missing, incomplete, inconsistent with the requested parameters or corrupt."""


class TrainingError(Mm2LatentError):
    """Training cannot proceed (empty data, missing modality, NaN loss, dimension mismatch)."""


# Messages about torch files the safe (weights_only) loader refuses. They live here, below both
# the library and storage, because both read torch files.
# torch's weights_only unpickler: "Unsupported global: GLOBAL fractions.Fraction was not an
# allowed global by default", or "Trying to load unsupported GLOBAL os.system whose module os
# is blocked".
_REFUSED_GLOBAL = re.compile(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)")


def refused_globals(error: BaseException) -> list[str]:
    """The dotted names of the globals torch's safe unpickler refused, from its error message."""
    return sorted(set(_REFUSED_GLOBAL.findall(str(error))))


def refused_message(refused: list[str]) -> str:
    """What to say about a file that names globals the safe loader refuses."""
    return (f"refers to {', '.join(refused)}, which the safe loader does not allow: the file may "
            "be unsafe (loading it could run code), or it is not the format expected here; it "
            "was not loaded.")


def unpickler_detail(error: BaseException) -> str:
    """torch's own diagnosis of a load failure, without its advice to pass weights_only=False."""
    # That advice would run whatever the file names.
    return str(error).split("WeightsUnpickler error:", 1)[-1].strip()
