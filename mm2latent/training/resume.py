"""`--resume` with nothing to resume, or with changed settings: refuse, naming what is wrong.

Run directories are named by the data and the settings (pipeline.run_url_for), so a resume with
another --lr points at a directory that does not exist yet and would silently start afresh.
Before that happens, an unfinished run of the same data under the same model name is looked
for; if there is one, the resume is refused with the fields that differ. A `--resume` whose
runs hold no checkpoint at all is refused too, rather than silently starting new runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from mm2latent_core.errors import TrainingError
from storage.checkpoints import latest_checkpoint, load_checkpoint
from storage.fs import basename, dirname, exists, join, list_names

SUMMARY_FILE = "summary.json"  # written when a run finished (pipeline._finish_run)


def _unfinished_siblings(run_url: str) -> list[str]:
    """Run directories beside `run_url` for the same data that hold checkpoints but no summary."""
    parent, name = dirname(run_url), basename(run_url)
    prefix = name.rsplit("-", 1)[0] + "-"  # "run-<data hash>-"
    found = []
    for entry in list_names(parent):
        sibling = join(parent, entry)
        if (entry.startswith(prefix) and entry != name
                and not exists(join(sibling, SUMMARY_FILE))
                and latest_checkpoint(sibling) is not None):
            found.append(sibling)
    return found


def _differences(theirs: dict, ours: dict) -> str:
    keys = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
    return ", ".join(f"{k}: {theirs.get(k)!r} -> {ours.get(k)!r}" for k in keys)


def check_resume_settings(run_url: str, config: dict) -> None:
    """With --resume: TrainingError if `run_url` has no checkpoint but an interrupted run of the
    same data does, naming the settings that differ from it.

    Args:
        run_url: the run directory the current settings map to.
        config: the current TrainCfg.to_dict().
    """
    if latest_checkpoint(run_url) is not None:
        return  # resuming the matching run; fit checks its settings in detail
    for sibling in _unfinished_siblings(run_url):
        ckpt = load_checkpoint(latest_checkpoint(sibling))
        detail = _differences(ckpt.get("config", {}), config) or "the architecture differs"
        raise TrainingError(
            f"cannot resume: the interrupted run {sibling} was started with other settings "
            f"({detail}). Fix: resume with its settings, or drop --resume to start a new run.")


def check_something_to_resume(runs: Sequence[tuple[str, dict]]) -> None:
    """With --resume: TrainingError unless one of a command's runs has checkpoints to continue.

    A run beside one of them that was interrupted with other settings is named first (see
    check_resume_settings). Runs of one command that never started (the sketch autoencoder
    after an interrupted mask one) start normally once another run has something to resume.

    Args:
        runs: (run directory, TrainCfg.to_dict()) of every run the command would train.
    """
    for run_url, config in runs:
        check_resume_settings(run_url, config)
    if any(latest_checkpoint(run_url) is not None for run_url, _ in runs):
        return
    where = ", ".join(run_url for run_url, _ in runs)
    raise TrainingError(f"nothing to resume: no interrupted run of this data and these settings "
                        f"({where} holds no checkpoint). Fix: drop --resume to start a new run.")
