"""Tokenizers trained in code on a few sentences, for the tiny text models."""

from __future__ import annotations

from typing import Any

CORPUS = [
    "I love this movie, it is wonderful and great.",
    "I hate this film, it was awful and boring.",
    "What a great day to run models on a queue.",
    "The food was terrible and the service was slow.",
    "pipeq runs Hugging Face models as an asynchronous job service.",
    "Paris is the capital of France and Berlin is the capital of Germany.",
    "The quick brown fox jumps over the lazy dog.",
    "My name is Sarah and I live in London.",
    "Hello world, this is a test of the tiny tokenizer.",
]


def wordpiece_tokenizer(*, vocab_size: int = 256, model_max_length: int = 128) -> Any:
    """A BERT-style tokenizer ([CLS] text [SEP]) as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import WordPieceTrainer
    from transformers import PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        CORPUS * 4,
        WordPieceTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False),
    )
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tokenizer.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=model_max_length,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


def byte_level_tokenizer(
    *,
    special: list[str],
    template: tuple[str, str] | None,
    vocab_size: int = 320,
    model_max_length: int = 128,
    **tokens: str,
) -> Any:
    """A byte-level BPE tokenizer (GPT-2, BART) trained on :data:`CORPUS`.

    ``special`` lists the special tokens (their ids follow that order from 0),
    ``template`` the ``(first, last)`` tokens put around a text (BART's
    ``<s> ... </s>``) or None (GPT-2 adds none), and ``tokens`` the roles
    (``bos_token="<s>"``...) for transformers.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS * 4, trainer)
    if template is None:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    else:
        first, last = template
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{first} $A {last}",
            pair=f"{first} $A {last} {last} $B:1 {last}:1",
            special_tokens=[(token, tokenizer.token_to_id(token)) for token in (first, last)],
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, model_max_length=model_max_length, **tokens
    )


def bpe_vocab(*, special: list[str], vocab_size: int = 240) -> tuple[dict[str, int], list[Any]]:
    """A sentencepiece-style BPE vocabulary and merges (``▁`` marks word starts)."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers
    from tokenizers.trainers import BpeTrainer

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.train_from_iterator(
        CORPUS * 4, BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False)
    )
    model = json.loads(tokenizer.to_str())["model"]
    merges = [
        tuple(merge) if isinstance(merge, list) else tuple(merge.split())
        for merge in model["merges"]
    ]
    return model["vocab"], merges


def bert_config(tokenizer: Any, *, labels: list[str] | None = None) -> Any:
    """A two-layer BERT sized for tests, with ``labels`` as its head's classes."""
    from transformers import BertConfig

    extra: dict[str, Any] = {}
    if labels:
        extra["id2label"] = dict(enumerate(labels))
        extra["label2id"] = {label: index for index, label in enumerate(labels)}
    return BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )
