"""tiny-automatic-speech-recognition: a random wav2vec2 with a CTC head over letters.

The sample is a chirp at 22.05 kHz, so the worker resamples it to 16 kHz.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

from services.worker.tiny import sample_media as samples
from services.worker.tiny.speech import feature_extractor, wav2vec2_config

TASK = "automatic-speech-recognition"
SAMPLES: list[Any] = [samples.inline(samples.audio_bytes(rate=22_050), "chirp.wav")]


def build(folder: Path) -> None:
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2ForCTC, Wav2Vec2Processor

    folder.mkdir(parents=True, exist_ok=True)
    letters = ["<pad>", "<unk>", "|", *string.ascii_lowercase, "'"]
    vocab_file = folder / "vocab.json"
    vocab_file.write_text(json.dumps({token: index for index, token in enumerate(letters)}))
    tokenizer = Wav2Vec2CTCTokenizer(
        str(vocab_file), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|"
    )
    config = wav2vec2_config(vocab_size=len(letters), pad_token_id=tokenizer.pad_token_id)
    Wav2Vec2ForCTC(config).save_pretrained(folder)
    Wav2Vec2Processor(feature_extractor=feature_extractor(), tokenizer=tokenizer).save_pretrained(
        folder
    )
