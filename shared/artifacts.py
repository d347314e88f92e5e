"""Files a job leaves behind, and the one rule for removing them.

A job that writes files (a fine-tuned model, say) names them under the key
``artifact`` of its result, ``{"artifact": PATH, ...}``, and, as soon as it
starts writing, of its progress (so that a job that fails midway still names
its files). PATH is a file or folder inside the model store
(``Settings.resolved_model_store``), preferably relative to it. When
housekeeping deletes the job, it deletes the artifact too, but only ever inside
the store: a path that leads outside it (absolute elsewhere, ``..``, or a
symbolic link out) is left alone and reported.
"""

from __future__ import annotations

import enum
import shutil
from pathlib import Path
from typing import Any, Final

#: The result key that names a job's artifact.
ARTIFACT_KEY: Final = "artifact"


class Removal(enum.Enum):
    REMOVED = "removed"
    ABSENT = "absent"  # already gone: nothing to do
    REFUSED = "refused"  # outside the store: left alone


def artifact_of(record: Any) -> str | None:
    """The artifact a result (or progress) names, if any."""
    if isinstance(record, dict):
        value = record.get(ARTIFACT_KEY)
        if isinstance(value, str) and value.strip():
            return value
    return None


def artifacts_of(*records: Any) -> list[str]:
    """The distinct artifacts named by a job's result and progress."""
    found = (artifact_of(record) for record in records)
    return list(dict.fromkeys(name for name in found if name is not None))


def inside_store(store: Path, artifact: str) -> Path | None:
    """Where ``artifact`` lies, if that is strictly inside ``store`` (links followed)."""
    root = store.resolve()
    target = (root / artifact).resolve()
    if target == root or not target.is_relative_to(root):
        return None
    return target


def remove_artifact(store: Path, artifact: str) -> Removal:
    """Delete ``artifact`` (a file or a folder) if it lies inside ``store``."""
    target = inside_store(store, artifact)
    if target is None:
        return Removal.REFUSED
    if not target.exists():
        return Removal.ABSENT
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    return Removal.REMOVED
