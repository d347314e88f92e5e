"""``pipeq models build-tiny``: a tiny random model for every task, built offline in seconds.

Each module here builds one task's model (config + random weights + a tokenizer
or processor made in code) into a folder, and names sample inputs for the demo.
:func:`build_all` writes them all and a registry file with aliases ``tiny-<task>``.
Nothing is downloaded.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import tomli_w

from services.worker.tiny import (
    audio_classification,
    automatic_speech_recognition,
    fill_mask,
    image_classification,
    image_segmentation,
    object_detection,
    question_answering,
    summarization,
    text_classification,
    text_generation,
    token_classification,
    translation,
    whisper,
)
from shared.registry import ModelSpec, dump_registry

log = logging.getLogger(__name__)

BUILDERS: dict[str, ModuleType] = {
    module.TASK: module
    for module in (
        text_generation,
        text_classification,
        question_answering,
        summarization,
        translation,
        token_classification,
        fill_mask,
        image_classification,
        object_detection,
        image_segmentation,
        automatic_speech_recognition,
        audio_classification,
    )
}


#: Further models built beside the one per task, by alias: other architectures a task's
#: code must handle (Whisper beside wav2vec2 for speech recognition).
EXTRAS: dict[str, ModuleType] = {whisper.ALIAS: whisper}


def alias(task: str) -> str:
    return f"tiny-{task}"


def samples() -> dict[str, list[Any]]:
    """Sample inputs per task, for the demo and smoke tests."""
    return {task: list(module.SAMPLES) for task, module in BUILDERS.items()}


def build_all(folder: Path, *, tasks: list[str] | None = None, seed: int = 0) -> Path:
    """Build the tiny models of ``tasks`` in ``folder``; returns the registry.

    By default every task's model and the :data:`EXTRAS`; with ``tasks``, those tasks' only.
    """
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    folder.mkdir(parents=True, exist_ok=True)
    chosen = {alias(task): BUILDERS[task] for task in tasks or list(BUILDERS)}
    if tasks is None:
        chosen.update(EXTRAS)
    specs = []
    for name, module in chosen.items():
        started = time.perf_counter()
        torch.manual_seed(seed)
        module.build(folder / name)
        extra = getattr(module, "REGISTRY", {})
        specs.append(ModelSpec(alias=name, task=module.TASK, source=name, **extra))
        log.info("built %s in %.2f s", name, time.perf_counter() - started)
    path = folder / "models.toml"
    path.write_text(tomli_w.dumps(dump_registry(specs)))
    return path
