"""Extractive question answering as transformers 4's pipeline did it, by brute force.

The handler (``services/worker/handlers/spans.py``) picks spans with array
operations; this scores every (start, end) pair of every window in plain
loops, so that the two computations share nothing but the model.
"""

from __future__ import annotations

from typing import Any


def answers(model_dir: str, inputs: Any, params: dict[str, Any]) -> Any:
    """For each window, every (start, end) in the context within ``max_answer_len``."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir)
    top_k = params.get("top_k", 1)
    max_length = params.get("max_length", min(384, model.config.max_position_embeddings))
    results = []
    for item in inputs if isinstance(inputs, list) else [inputs]:
        encoded = tokenizer(
            item["question"],
            item["context"],
            truncation="only_second",
            max_length=max_length,
            stride=min(params.get("doc_stride", 128), max_length // 2),
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="longest",
            return_tensors="pt",
        )
        with torch.inference_mode():
            names = ("input_ids", "attention_mask", "token_type_ids")
            output = model(**{name: encoded[name] for name in names if name in encoded})
        found, null = [], None
        for window in range(encoded["input_ids"].shape[0]):
            ids = encoded["input_ids"][window].tolist()
            context = [
                i
                for i, sequence in enumerate(encoded.sequence_ids(window))
                if sequence == 1 and encoded["attention_mask"][window][i] == 1
            ]
            keep = [*context, ids.index(tokenizer.cls_token_id)]
            start = torch.softmax(output.start_logits[window][keep].double(), 0)
            end = torch.softmax(output.end_logits[window][keep].double(), 0)
            p_start = dict(zip(keep, start.tolist(), strict=True))
            p_end = dict(zip(keep, end.tolist(), strict=True))
            cls = keep[-1]
            if params.get("handle_impossible_answer"):
                score = p_start[cls] * p_end[cls]
                null = score if null is None else min(null, score)
            words = encoded.encodings[window]
            for s in context:
                for e in context:
                    if s <= e < s + params.get("max_answer_len", 15):
                        first, last = _chars(words, s, e, params.get("align_to_words", True))
                        found.append((p_start[s] * p_end[e], first, last))
        found.sort(key=lambda f: f[0], reverse=True)
        best = [
            {"score": score, "start": first, "end": last, "answer": item["context"][first:last]}
            for score, first, last in found[:top_k]
        ]
        if null is not None:
            best = sorted(
                [*best, {"score": null, "start": 0, "end": 0, "answer": ""}],
                key=lambda a: a["score"],
                reverse=True,
            )[:top_k]
        results.append(best[0] if top_k == 1 else best)
    return results if isinstance(inputs, list) else results[0]


def _chars(encoding: Any, start: int, end: int, align_to_words: bool) -> tuple[int, int]:
    if align_to_words:
        first_word, last_word = encoding.token_to_word(start), encoding.token_to_word(end)
        return (
            encoding.word_to_chars(first_word, 1)[0],
            encoding.word_to_chars(last_word, 1)[1],
        )
    return encoding.offsets[start][0], encoding.offsets[end][1]
