"""Small labeled data sets generated in code, for fine-tuning tests (nothing downloaded).

:func:`sentiment_rows` makes review-like sentences from templates, subjects and
opinion words: the label is the opinion word's polarity. Held-out rows use
subjects and templates the training rows never saw, so a model that learns them
has learned the opinion words, not the sentences.
"""

from __future__ import annotations

import random
from typing import Any

POSITIVE = [
    "wonderful", "excellent", "delightful", "fantastic", "superb", "lovely", "brilliant",
    "great", "amazing", "enjoyable", "charming", "outstanding",
]  # fmt: skip
NEGATIVE = [
    "terrible", "awful", "dreadful", "horrible", "boring", "disappointing", "poor", "bad",
    "miserable", "annoying", "unpleasant", "painful",
]  # fmt: skip
SUBJECTS = [
    "the movie", "the meal", "this book", "the concert", "our hotel", "the service",
    "the game", "this phone", "the lecture", "the trip", "the show", "the coffee",
]  # fmt: skip
HELD_SUBJECTS = ["the museum", "that album", "the new car", "this restaurant"]
TEMPLATES = [
    "{s} was {w}.", "I thought {s} was {w}.", "Honestly, {s} is {w}.",
    "Everyone said {s} felt {w}.", "In short, {s} was {w} from start to finish.",
]  # fmt: skip
HELD_TEMPLATES = ["My friends found {s} {w}.", "What a {w} experience {s} was."]


def sentiment_rows(count: int, *, held_out: bool = False, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` rows ``{"sentence", "sentiment"}``, half positive, in a seeded order."""
    rng = random.Random(seed)
    subjects = HELD_SUBJECTS if held_out else SUBJECTS
    templates = HELD_TEMPLATES if held_out else TEMPLATES
    rows = []
    for index in range(count):
        positive = index % 2 == 0
        word = rng.choice(POSITIVE if positive else NEGATIVE)
        text = rng.choice(templates).format(s=rng.choice(subjects), w=word)
        rows.append(
            {
                "sentence": text[0].upper() + text[1:],
                "sentiment": "positive" if positive else "negative",
            }
        )
    rng.shuffle(rows)
    return rows
