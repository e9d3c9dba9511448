"""`--resume` with changed settings: find the interrupted run and name what differs.

Run directories are named by the data and the settings (pipeline.run_url_for), so a resume with
another --lr points at a directory that does not exist yet and would silently start afresh.
Before that happens, an unfinished run of the same data under the same model name is looked
for; if there is one, the resume is refused with the fields that differ.
"""

from __future__ import annotations

from mm2latent.errors import TrainingError
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
