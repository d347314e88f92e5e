"""translation: ``AutoModelForSeq2SeqLM.generate``, answering ``translation_text``.

Three kinds of model, told apart by their tokenizer and config:

- multilingual (NLLB, M2M100, mBART-50: the tokenizer has language codes and
  ``_build_translation_inputs``): ``src_lang`` and ``tgt_lang`` are required
  and checked against the model's codes; the source is tagged with its
  language and the first generated token is forced to the target's;
- a config with ``task_specific_params`` ``translation_<src>_to_<tgt>``
  (T5): the languages pick the entry whose prefix goes before the source
  (optional when there is only one);
- one fixed pair (Marian ``opus-mt-en-de``): no language parameters.
"""

from __future__ import annotations

import re
from typing import Any

from services.worker.handlers.base import Loaded
from services.worker.handlers.seq2seq import Seq2SeqHandler, task_prefix
from shared.errors import InvalidParameter
from shared.params.nlp import TranslationParams

#: Language-code tokens of multilingual tokenizers: eng_Latn (NLLB), en_XX (mBART).
LANGUAGE_TOKEN = re.compile(r"^[a-z]{2,3}_[A-Z][A-Za-z]{1,3}$")
PAIR_KEY = re.compile(r"^translation_(?P<src>[^_]+)_to_(?P<tgt>[^_]+)$")


class Translation(Seq2SeqHandler[TranslationParams]):
    task = "translation"
    output_key = "translation_text"

    def tokenize(
        self, loaded: Loaded, texts: list[str], params: TranslationParams
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        tokenizer = loaded.processor
        kwargs = self.tokenizer_kwargs(loaded, params)
        codes = language_codes(tokenizer)
        if codes and hasattr(tokenizer, "_build_translation_inputs"):
            src, tgt = (
                _language(params.src_lang, "src_lang", codes),
                _language(params.tgt_lang, "tgt_lang", codes),
            )
            inputs = dict(
                tokenizer._build_translation_inputs(texts, src_lang=src, tgt_lang=tgt, **kwargs)
            )
            return inputs, {"forced_bos_token_id": inputs.pop("forced_bos_token_id")}
        prefix = _pair_prefix(loaded.model.config, params)
        return dict(tokenizer([prefix + text for text in texts], **kwargs)), {}


def language_codes(tokenizer: Any) -> list[str]:
    """The language codes a multilingual tokenizer knows; empty for any other."""
    for attribute in ("lang_code_to_id", "lang_code_to_token"):
        mapping = getattr(tokenizer, attribute, None)
        if isinstance(mapping, dict) and mapping:
            return sorted(str(code) for code in mapping)
    special = getattr(tokenizer, "extra_special_tokens", None) or []
    if isinstance(special, dict):
        special = list(special.values())
    return sorted({str(token) for token in special if LANGUAGE_TOKEN.match(str(token))})


def _language(value: str | None, name: str, codes: list[str]) -> str:
    if value is not None and value in codes:
        return value
    shown = ", ".join(codes[:12]) + (f", ... ({len(codes)} in all)" if len(codes) > 12 else "")
    if value is None:
        raise InvalidParameter(name, f"this model is multilingual: name a language ({shown})")
    raise InvalidParameter(name, f"unknown language code {value!r}; this model knows {shown}")


def _pair_prefix(config: Any, params: TranslationParams) -> str:
    specific = getattr(config, "task_specific_params", None) or {}
    pairs = {
        (match["src"], match["tgt"]): key
        for key in specific
        if (match := PAIR_KEY.match(key)) is not None
    }
    chosen = (params.src_lang, params.tgt_lang)
    if not pairs:
        for name in ("src_lang", "tgt_lang"):
            if getattr(params, name) is not None:
                raise InvalidParameter(
                    name, "this model translates one fixed language pair; leave it out"
                )
        return task_prefix(config, "translation")
    if chosen == (None, None) and len(pairs) == 1:
        return task_prefix(config, next(iter(pairs.values())))
    if chosen in pairs:
        return task_prefix(config, pairs[chosen])
    known = ", ".join(f"{src}->{tgt}" for src, tgt in sorted(pairs))
    name = "src_lang" if params.src_lang not in {src for src, _ in pairs} else "tgt_lang"
    raise InvalidParameter(name, f"this model translates {known}; name src_lang and tgt_lang")
