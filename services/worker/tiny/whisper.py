"""tiny-whisper: a random one-layer Whisper, so that pipeq's Whisper path is tested offline.

A second model for automatic-speech-recognition beside the wav2vec2 CTC one: Whisper is
a sequence-to-sequence model, so it takes generation parameters (``max_new_tokens``,
``num_beams``, ``language``), segment timestamps (``return_timestamps: true``), word
timestamps through cross-attention (``"word"``), and long audio in chunks. Its
tokenizer is a byte-level BPE trained in code with Whisper's special tokens after it:
``<|endoftext|>``, ``<|startoftranscript|>``, one language (``<|en|>``), the task
tokens, ``<|notimestamps|>`` and the 1,501 timestamp tokens ``<|0.00|>``..``<|30.00|>``
that Whisper's generation reads by their position. The generation config carries what
``WhisperForConditionalGeneration.generate`` looks up (``no_timestamps_token_id``,
``lang_to_id``, ``task_to_id``, alignment heads); it is saved as not derived from the
model config, or loading would rebuild it without them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.worker.tiny import sample_media as samples
from services.worker.tiny.text import CORPUS

ALIAS = "tiny-whisper"
TASK = "automatic-speech-recognition"
SAMPLES: list[Any] = [samples.inline(samples.audio_bytes(rate=22_050), "chirp.wav")]
REGISTRY: dict[str, Any] = {"defaults": {"max_new_tokens": 8}}
SPECIAL = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
]
TIMESTAMPS = [f"<|{index * 0.02:.2f}|>" for index in range(1501)]


def _bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from tokenizers.trainers import BpeTrainer

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [
        (merge[0], merge[1]) if isinstance(merge, list) else tuple(merge.split())
        for merge in model["merges"]
    ]
    return dict(model["vocab"]), merges


def build(folder: Path) -> None:
    from tokenizers import AddedToken
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _bpe()
    for token in SPECIAL + TIMESTAMPS:
        vocab[token] = len(vocab)
    tokenizer = WhisperTokenizer(
        vocab=vocab, merges=merges, pad_token="<|endoftext|>", model_max_length=64
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL})
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TIMESTAMPS])
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL}
    end = ids["<|endoftext|>"]
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        d_model=64,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_source_positions=1500,
        max_target_positions=64,
        pad_token_id=end,
        bos_token_id=end,
        eos_token_id=end,
        decoder_start_token_id=ids["<|startoftranscript|>"],
        begin_suppress_tokens=[],
        suppress_tokens=[],
    )
    model = WhisperForConditionalGeneration(config)
    generation = model.generation_config
    generation.decoder_start_token_id = ids["<|startoftranscript|>"]
    generation.no_timestamps_token_id = ids["<|notimestamps|>"]
    generation.prev_sot_token_id = ids["<|startofprev|>"]
    generation.lang_to_id = {"<|en|>": ids["<|en|>"]}
    generation.task_to_id = {"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}
    generation.is_multilingual = True
    generation.max_initial_timestamp_index = 50
    generation.alignment_heads = [[0, 0], [0, 1]]
    generation.max_length = 64
    generation.begin_suppress_tokens = []
    generation.suppress_tokens = []
    generation._from_model_config = False  # keep these fields when it is loaded again
    model.save_pretrained(folder)
    extractor = WhisperFeatureExtractor(feature_size=80, sampling_rate=16_000)
    WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
