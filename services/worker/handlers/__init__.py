"""One handler per task family: the table pipeq's workers dispatch on.

A new task is a module here with a :class:`~services.worker.handlers.base.Handler`
subclass, its parameter schema in ``shared/params``, its route in
``shared/queues.ROUTES``, a tiny model in ``services/worker/tiny``, and one line below.
"""

from __future__ import annotations

from typing import Any

from services.worker.handlers.audio import AudioClassification, SpeechRecognition
from services.worker.handlers.base import Handler, Loaded
from services.worker.handlers.fill_mask import FillMask
from services.worker.handlers.question_answering import QuestionAnswering
from services.worker.handlers.seq2seq import Summarization
from services.worker.handlers.text_classification import TextClassification
from services.worker.handlers.text_generation import TextGeneration
from services.worker.handlers.token_classification import TokenClassification
from services.worker.handlers.translation import Translation
from services.worker.handlers.vision import ImageClassification, ImageSegmentation, ObjectDetection
from shared.errors import UnsupportedTask

HANDLERS: dict[str, Handler[Any]] = {
    handler.task: handler
    for handler in (
        TextGeneration(),
        TextClassification(),
        QuestionAnswering(),
        Summarization(),
        Translation(),
        TokenClassification(),
        FillMask(),
        ImageClassification(),
        ObjectDetection(),
        ImageSegmentation(),
        SpeechRecognition(),
        AudioClassification(),
    )
}

__all__ = ["HANDLERS", "Handler", "Loaded", "handler_for"]


def handler_for(task: str) -> Handler[Any]:
    try:
        return HANDLERS[task]
    except KeyError:
        raise UnsupportedTask(f"task {task!r} has no handler in this worker") from None
