"""Fine-tuned models: how a name a ``fine-tune`` job produced becomes an alias workers serve.

A fine-tune job writes its model into the model store, under
``finetunes/<name>/`` (its artifact), and, last of all, the file
``finetunes/<name>/pipeq-model.json``: a registry entry (the fields of
``[models.<alias>]`` in the TOML registry) whose relative paths are relative to
that folder. The file's presence means the model is complete: it is written to a
temporary name and renamed into place.

A worker that meets an alias not in its TOML registry looks here
(:func:`find`), so a fine-tuned model is servable on every worker that shares
the store the moment its job succeeds, with no restart and no registry edit.
The store is the one place both sides must share anyway (the weights live
there); a database table would add a second source of truth for the same
folder. The entry lives and dies with its artifact: when housekeeping removes
the job's artifact, the alias is gone too (keep the job, or copy the folder and
add it to the TOML registry, to keep the model for good).

No torch here: producers and beat may import it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from shared.errors import ConfigError
from shared.jobs import ALIAS_PATTERN
from shared.registry import ModelSpec, problems

FOLDER: Final = "finetunes"
ENTRY: Final = "pipeq-model.json"


def artifact_of(name: str) -> str:
    """The artifact (relative to the store) of the fine-tuned model ``name``."""
    return f"{FOLDER}/{name}"


def folder_of(store: Path, name: str) -> Path:
    return store / FOLDER / name


def find(store: Path, alias: str) -> ModelSpec | None:
    """The registry entry of the fine-tuned model ``alias``, or None if there is none."""
    if not re.match(ALIAS_PATTERN, alias):
        return None
    folder = folder_of(store, alias)
    try:
        entry = json.loads((folder / ENTRY).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"fine-tuned model {alias!r}: unreadable {ENTRY}: {exc}") from exc
    try:
        return ModelSpec.model_validate({**entry, "alias": alias, "base_dir": folder.resolve()})
    except ValidationError as exc:
        raise ConfigError(f"fine-tuned model {alias!r}: bad {ENTRY}: {problems(exc)}") from None


def every(store: Path) -> tuple[list[ModelSpec], list[ConfigError]]:
    """Every complete fine-tuned model in the store, by name (``pipeq models list``), and
    what is wrong with the entries that do not read: one bad entry hides no other."""
    specs, broken = [], []
    for entry in sorted((store / FOLDER).glob(f"*/{ENTRY}")):
        try:
            spec = find(store, entry.parent.name)
        except ConfigError as exc:
            broken.append(exc)
            continue
        if spec is not None:
            specs.append(spec)
    return specs, broken


def register(store: Path, name: str, entry: dict[str, Any]) -> Path:
    """Write ``name``'s entry, atomically; the model is servable once this returns."""
    ModelSpec.model_validate({**entry, "alias": name})  # never publish an entry that will not load
    folder = folder_of(store, name)
    scratch = folder / f".{ENTRY}.tmp"
    scratch.write_text(json.dumps(entry, indent=2, sort_keys=True))
    os.replace(scratch, folder / ENTRY)
    return folder / ENTRY
