"""Answer spans from start and end scores: the decoding step of extractive QA.

For each window (feature) of a question's context: start and end logits
become probabilities over the context tokens (and the [CLS] token, whose
score stands for "no answer"); a span ``s..e`` scores ``p_start[s] *
p_end[e]`` for ``s <= e < s + max_answer_len``, both inside the context. The
best ``top_k`` spans of every window are pooled per question, mapped to
character offsets (widened to whole words with ``align_to_words``), and the
best ``top_k`` kept. With ``handle_impossible_answer`` the empty answer
competes with the lowest no-answer score of the question's windows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from shared.params.nlp import QuestionAnsweringParams

Floats = npt.NDArray[np.float32]


def best_answers(
    encoded: Any,
    start_logits: Floats,
    end_logits: Floats,
    *,
    contexts: list[str],
    context_sequence: int,
    cls_token_id: int | None,
    params: QuestionAnsweringParams,
) -> list[list[dict[str, Any]]]:
    """The best answers of each question, best first (at most ``top_k`` each)."""
    found: list[list[dict[str, Any]]] = [[] for _ in contexts]
    no_answer = [float("inf")] * len(contexts)
    for feature, item in enumerate(encoded["overflow_to_sample_mapping"].tolist()):
        sequence_ids = encoded.sequence_ids(feature)
        attention = encoded["attention_mask"][feature].numpy().astype(bool)
        in_context = np.array([sid == context_sequence for sid in sequence_ids]) & attention
        input_ids = encoded["input_ids"][feature].numpy()
        cls = np.flatnonzero(input_ids == (-1 if cls_token_id is None else cls_token_id))
        allowed = in_context.copy()
        allowed[cls] = True
        start = _softmax(start_logits[feature], allowed)
        end = _softmax(end_logits[feature], allowed)
        if params.handle_impossible_answer and cls.size:
            no_answer[item] = min(no_answer[item], float(start[cls[0]] * end[cls[0]]))
        encoding = encoded.encodings[feature]
        for s, e, score in _top_spans(start, end, in_context, params):
            first, last = _characters(encoding, s, e, context_sequence, params.align_to_words)
            found[item].append(
                {"score": score, "start": first, "end": last, "answer": contexts[item][first:last]}
            )
    answers = []
    for item, candidates in enumerate(found):
        if params.handle_impossible_answer and no_answer[item] != float("inf"):
            candidates.append({"score": no_answer[item], "start": 0, "end": 0, "answer": ""})
        candidates.sort(key=lambda answer: answer["score"], reverse=True)
        answers.append(candidates[: params.top_k])
    return answers


def _softmax(logits: Floats, allowed: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
    masked = np.where(allowed, logits.astype(np.float64), -np.inf)
    exp = np.exp(masked - masked.max())
    return np.asarray(exp / exp.sum())


def _top_spans(
    start: npt.NDArray[np.float64],
    end: npt.NDArray[np.float64],
    in_context: npt.NDArray[np.bool_],
    params: QuestionAnsweringParams,
) -> list[tuple[int, int, float]]:
    scores = np.outer(start, end)
    length = np.arange(scores.shape[1])[None, :] - np.arange(scores.shape[0])[:, None]
    valid = (length >= 0) & (length < params.max_answer_len)
    valid &= in_context[:, None] & in_context[None, :]
    flat = np.where(valid, scores, -1.0).ravel()
    order = np.argsort(-flat, kind="stable")[: params.top_k]
    return [
        (int(index // scores.shape[1]), int(index % scores.shape[1]), float(flat[index]))
        for index in order
        if flat[index] >= 0
    ]


def _characters(
    encoding: Any, start: int, end: int, sequence: int, align_to_words: bool
) -> tuple[int, int]:
    if align_to_words:
        first_word, last_word = encoding.token_to_word(start), encoding.token_to_word(end)
        if first_word is not None and last_word is not None:
            first = encoding.word_to_chars(first_word, sequence)
            last = encoding.word_to_chars(last_word, sequence)
            if first is not None and last is not None:
                return int(first[0]), int(last[1])
    return int(encoding.offsets[start][0]), int(encoding.offsets[end][1])
