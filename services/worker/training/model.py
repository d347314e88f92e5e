"""The model a fine-tune job trains: its base, loaded for the objective, wrapped for the strategy.

- ``full``: every weight trains; the base must be full precision.
- ``lora``: peft LoRA adapters (``r``, ``alpha``, ``dropout``, ``target_modules``;
  peft's defaults per architecture when absent); the new head trains in full.
- ``qlora``: the base loaded in bitsandbytes nf4 (double quant), prepared with
  ``prepare_model_for_kbit_training``, then LoRA. On CPU, bitsandbytes 4-bit
  needs every quantized Linear's ``in_features`` to be a multiple of 64.
- ``prefix``: peft prefix tuning (``num_virtual_tokens``).

Whether a model can take a strategy is found out before training starts: the
wrapped model runs one forward pass on two training rows, and any failure fails
the job with the strategy named (``Model does not support past key values``,
a quantized Linear of the wrong width, target modules not found...).
"""

from __future__ import annotations

from typing import Any

from services.worker.loading import load_pretrained, load_processor
from shared.errors import InvalidParameter
from shared.params.finetune import FineTuneParams
from shared.registry import ModelSpec, Quantization

AUTO_CLASSES = {
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "causal-lm": "AutoModelForCausalLM",
    "seq2seq": "AutoModelForSeq2SeqLM",
}
PEFT_TASKS = {
    "sequence-classification": "SEQ_CLS",
    "token-classification": "TOKEN_CLS",
    "causal-lm": "CAUSAL_LM",
    "seq2seq": "SEQ_2_SEQ_LM",
}
#: Heads kept in full precision under 4-bit (they are new, small, and train in full).
HEADS = ["classifier", "score", "lm_head", "pooler"]


def served_task(objective: str, base: ModelSpec) -> str:
    """The task the trained model serves on the nlp queue."""
    if objective == "sequence-classification":
        return "text-classification"
    if objective == "token-classification":
        return "token-classification"
    if objective == "causal-lm":
        return "text-generation"
    return base.task if base.task in ("summarization", "translation") else "summarization"


def load_tokenizer(base: ModelSpec, objective: str) -> Any:
    from transformers import AutoTokenizer

    tokenizer = load_processor(AutoTokenizer, base)
    if tokenizer.pad_token is None and objective in ("causal-lm", "sequence-classification"):
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def training_spec(base: ModelSpec, strategy: str) -> ModelSpec:
    """The base's registry entry as training loads it: 4-bit for QLoRA, else full precision."""
    if strategy == "qlora":
        quant = Quantization(
            method="bnb-4bit", quant_type="nf4", double_quant=True, skip_modules=HEADS
        )
        return base.model_copy(update={"quantization": quant, "adapter": None})
    if base.quantized:
        raise InvalidParameter(
            "strategy",
            f"{strategy!r} trains full-precision weights; model {base.alias!r} is registered "
            f"{base.quantization.label}: use qlora, or register an unquantized alias",
        )
    if base.adapter is not None:
        raise InvalidParameter("model", f"{base.alias!r} is an adapter; fine-tune its base")
    return base


def load_base(
    base: ModelSpec, params: FineTuneParams, *, labels: list[str], device: str, tokenizer: Any
) -> Any:
    """The base model for the objective, with a head sized for ``labels``."""
    import transformers

    assert params.objective is not None and params.strategy is not None
    if params.strategy == "qlora":
        from services.worker.loading import is_installed

        if not is_installed("bitsandbytes"):
            raise InvalidParameter("strategy", "qlora needs bitsandbytes, which this worker lacks")
    spec = training_spec(base, params.strategy)
    auto = getattr(transformers, AUTO_CLASSES[params.objective])
    extra: dict[str, Any] = {}
    if labels:
        extra = {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {name: index for index, name in enumerate(labels)},
            "ignore_mismatched_sizes": True,
        }
    try:
        model = load_pretrained(auto, spec, device, **extra)
    except Exception as exc:
        if "Unrecognized configuration class" in str(exc) or "cannot load" in str(exc):
            raise InvalidParameter(
                "objective",
                f"model {base.alias!r} cannot be trained for {params.objective}: {exc}",
            ) from exc
        raise
    if getattr(model.config, "pad_token_id", None) is None and tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def wrap(model: Any, params: FineTuneParams, *, base: ModelSpec) -> Any:
    """``model`` wrapped by peft for the strategy (unchanged for ``full``)."""
    if params.strategy == "full":
        return model
    import peft

    assert params.objective is not None
    task_type = getattr(peft.TaskType, PEFT_TASKS[params.objective])
    config: Any
    if params.strategy == "prefix":
        options = params.prefix or _default_prefix()
        config = peft.PrefixTuningConfig(
            task_type=task_type, num_virtual_tokens=options.num_virtual_tokens
        )
    else:
        from shared.params.finetune import LoraOptions

        lora = params.lora or LoraOptions()
        if params.strategy == "qlora":
            model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
            _keep_4bit_weights_trainable_on_cpu(model)
        config = peft.LoraConfig(
            task_type=task_type,
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
        )
    try:
        return peft.get_peft_model(model, config)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        where = "lora" if params.strategy in ("lora", "qlora") else "strategy"
        raise InvalidParameter(
            where, f"strategy {params.strategy!r} does not fit model {base.alias!r}: {exc}"
        ) from exc


def _keep_4bit_weights_trainable_on_cpu(model: Any) -> None:
    """On a CPU with AVX512-BF16, bitsandbytes repacks a 4-bit Linear's weight for its
    inference kernel the first time the layer runs in eval mode without gradients, which is
    what the Trainer's evaluation before training does; the repacked layer then fails in
    training ("a view of a leaf Variable that requires grad is being used in an in-place
    operation"). Layers being trained keep the training layout."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def _default_prefix() -> Any:
    from shared.params.finetune import PrefixOptions

    return PrefixOptions()


def dry_run(model: Any, batch: dict[str, Any], params: FineTuneParams, *, base: ModelSpec) -> None:
    """One forward and backward pass on a real batch: a strategy the model cannot take fails."""
    import torch

    device = next(model.parameters()).device
    inputs = {key: value.to(device) for key, value in batch.items()}
    try:
        loss = model(**inputs).loss
        if loss is None or not torch.isfinite(loss):
            raise ValueError(f"the loss is {loss}")
        loss.backward()
    except (RuntimeError, ValueError, TypeError, AttributeError, IndexError) as exc:
        hint = ""
        if params.strategy == "qlora" and device.type == "cpu":
            hint = (
                " (bitsandbytes 4-bit on CPU needs every quantized Linear's in_features to be a "
                "multiple of 64)"
            )
        raise InvalidParameter(
            "strategy",
            f"{params.strategy!r} does not fit model {base.alias!r} for {params.objective}: "
            f"{type(exc).__name__}: {exc}{hint}",
        ) from exc
    finally:
        model.zero_grad(set_to_none=True)
