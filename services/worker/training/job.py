"""One fine-tune job, start to finish: check -> load -> train (resumable) -> save -> register.

::

    params, registry entry of the base, data set (read, columns, split, tokenized)
      -> base model for the objective, wrapped for the strategy, one dry forward pass
         (everything above fails the job before any file is written)
      -> claim finetunes/<output>/ in the model store (or find our own: a resume)
      -> Trainer: checkpoints every save_steps in finetunes/<output>/checkpoints;
         resumes from the last one if an earlier attempt of this job left any;
         progress to the row; stops within a step when the job is asked to
      -> save: the full model, or the adapter (merged into the base if asked),
         the loss curve PNG; then the registry entry (shared.finetuned): servable
      -> result: the model's name, artifact, metrics, loss curve

The runner calls :func:`fine_tune` for the task ``fine-tune`` instead of a
handler's decode/predict/encode: a training job owns its model (it changes the
weights), so it loads its own copy of the base rather than sharing a served one.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from services.worker.control import JobControl
from services.worker.training import data as datasets_
from services.worker.training import model as models_
from services.worker.training.progress import Progress, draw_loss_curve, loss_points
from shared import finetuned
from shared.errors import InvalidParameter, JobCancelled
from shared.jobs import JobRequest
from shared.params import validate_params
from shared.params.finetune import FineTuneParams
from shared.registry import ModelSpec, Quantization, configured_registry
from shared.settings import Settings

log = logging.getLogger(__name__)

OWNER = ".pipeq-job"


def fine_tune(
    request: JobRequest, *, settings: Settings, device: str, control: JobControl
) -> dict[str, Any]:
    params = validate_params("fine-tune", request.params)
    assert isinstance(params, FineTuneParams)
    params.require()
    assert params.output is not None and params.objective is not None
    registry = configured_registry(settings)
    base = registry.get(request.model)
    if params.output in registry:
        raise InvalidParameter("output", f"{params.output!r} is an alias in the registry")
    store = settings.resolved_model_store
    folder = finetuned.folder_of(store, params.output)
    _check_free(folder, params.output, control.job_id)

    data = datasets_.prepare(request.inputs, params, settings=settings)
    control.check()
    tokenizer = models_.load_tokenizer(base, params.objective)
    data = datasets_.tokenize(data, tokenizer, params)
    from transformers import set_seed

    set_seed(params.seed)  # the new head's initial weights, LoRA's, the prefix's
    model = models_.load_base(base, params, labels=data.labels, device=device, tokenizer=tokenizer)
    model = models_.wrap(model, params, base=base)
    collator = _collator(params.objective, tokenizer, model)
    models_.dry_run(model, collator([data.train[i] for i in range(min(2, len(data.train)))]),
                    params, base=base)  # fmt: skip
    control.check()

    resumed = _claim(folder, control.job_id)
    artifact = finetuned.artifact_of(params.output)
    progress = Progress(control, artifact=artifact)
    control.report({"stage": "training", "artifact": artifact})
    trainer = _trainer(model, tokenizer, collator, data, params, folder, device, control, progress)
    before = None
    if data.eval is not None and not resumed:
        before = _metrics(trainer.evaluate(), prefix="eval_")
    checkpoint = _last_checkpoint(folder / "checkpoints")
    try:
        outcome = trainer.train(resume_from_checkpoint=checkpoint)
        control.check()  # cancelled or timed out: the Trainer stopped at a step's end
    except JobCancelled:
        shutil.rmtree(folder, ignore_errors=True)  # a cancelled job frees its name
        raise
    after = _metrics(trainer.evaluate(), prefix="eval_") if data.eval is not None else {}
    control.check()
    control.report({**(control.progress or {}), "stage": "saving"})
    task = models_.served_task(params.objective, base)
    entry = _save(trainer, tokenizer, params, base, folder, device, task=task, labels=data.labels)
    train_points, eval_points = loss_points(trainer.state.log_history)
    curve = draw_loss_curve(
        folder / "loss.png",
        train_points,
        eval_points,
        title=f"{params.output}: {params.strategy} {params.objective} on {base.alias}",
    )
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    finetuned.register(store, params.output, entry)
    log.info("fine-tuned model %s registered at %s", params.output, folder)
    return {
        "model": params.output,
        "task": task,
        "base": base.alias,
        "strategy": params.strategy,
        "objective": params.objective,
        "artifact": artifact,
        "loss_curve": f"{artifact}/{curve.name}",
        "metrics": {
            "train_loss": _round(outcome.training_loss),
            "eval": after,
            "eval_before": before,
        },
        "first_loss": train_points[0][1] if train_points else None,
        "last_loss": train_points[-1][1] if train_points else None,
        "steps": int(trainer.state.global_step),
        "epochs": round(float(trainer.state.epoch or 0), 3),
        "resumed_from": Path(checkpoint).name if checkpoint else None,
        "train_rows": len(data.train),
        "eval_rows": len(data.eval) if data.eval is not None else 0,
        "labels": data.labels,
        "adapter": entry.get("adapter") is not None,
    }


# -- the model store ---------------------------------------------------------------


def _check_free(folder: Path, name: str, job_id: str) -> None:
    """Refuse an output name another job made (or is making); our own is a resume."""
    owner = _owner(folder)
    if folder.exists() and owner != job_id:
        made = f" (made by job {owner})" if owner else ""
        raise InvalidParameter("output", f"a model named {name!r} exists in the store{made}")


def _owner(folder: Path) -> str | None:
    try:
        return (folder / OWNER).read_text().strip()
    except OSError:
        return None


def _claim(folder: Path, job_id: str) -> bool:
    """Make the job's folder; True if this job made it before (a resume)."""
    try:
        folder.mkdir(parents=True)
    except FileExistsError:
        if _owner(folder) == job_id:
            return True
        raise InvalidParameter("output", f"a model named {folder.name!r} exists") from None
    (folder / OWNER).write_text(job_id)
    return False


def _last_checkpoint(folder: Path) -> str | None:
    """The newest complete checkpoint in ``folder``. The Trainer writes ``trainer_state.json``
    last, so a checkpoint without it (or with it cut short) is one its worker died writing:
    resuming from it failed the job ("Can't find a valid checkpoint"); the one before is used."""
    if not folder.is_dir():
        return None
    steps = {path: path.name.removeprefix("checkpoint-") for path in folder.glob("checkpoint-*")}
    found = [path for path, step in steps.items() if step.isdigit()]
    for path in sorted(found, key=lambda path: int(steps[path]), reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            log.warning("checkpoint %s is incomplete (its worker died writing it); skipped", path)
            continue
        return str(path)
    return None


# -- the Trainer -------------------------------------------------------------------


def _collator(objective: str, tokenizer: Any, model: Any) -> Any:
    import transformers as t

    if objective == "sequence-classification":
        return t.DataCollatorWithPadding(tokenizer)
    if objective == "token-classification":
        return t.DataCollatorForTokenClassification(tokenizer)
    if objective == "causal-lm":
        return t.DataCollatorForLanguageModeling(tokenizer, mlm=False)
    return t.DataCollatorForSeq2Seq(tokenizer, model=model)


def training_arguments(
    params: FineTuneParams, output_dir: Path, *, device: str, evaluate: bool
) -> Any:
    """TrainingArguments from the names users know, mapped onto transformers 5."""
    from transformers import TrainingArguments

    strategy = params.evaluation if evaluate else "no"
    return TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=params.num_train_epochs,
        max_steps=params.max_steps,
        per_device_train_batch_size=params.per_device_train_batch_size,
        per_device_eval_batch_size=params.per_device_eval_batch_size,
        gradient_accumulation_steps=params.gradient_accumulation_steps,
        learning_rate=params.learning_rate,
        weight_decay=params.weight_decay,
        warmup_steps=params.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio
        eval_strategy=strategy,
        eval_steps=params.eval_steps if strategy == "steps" else None,
        logging_strategy="steps",
        logging_steps=params.logging_steps,
        save_strategy="steps",
        save_steps=params.save_steps,
        save_total_limit=1,
        seed=params.seed,
        data_seed=params.seed,
        use_cpu=device == "cpu",
        report_to=[],
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )


def _trainer(
    model: Any,
    tokenizer: Any,
    collator: Any,
    data: Any,
    params: FineTuneParams,
    folder: Path,
    device: str,
    control: JobControl,
    progress: Progress,
) -> Any:
    from transformers import Trainer

    args = training_arguments(
        params, folder / "checkpoints", device=device, evaluate=data.eval is not None
    )
    from transformers.trainer_callback import PrinterCallback

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        processing_class=tokenizer,  # transformers 5: not tokenizer=
        data_collator=collator,
        compute_metrics=_accuracy if data.labels else None,
        callbacks=[control.trainer_callback(), progress.callback()],
    )
    trainer.remove_callback(PrinterCallback)  # logs go to the job row, not stdout
    return trainer


def _accuracy(prediction: Any) -> dict[str, float]:
    import numpy as np

    logits = prediction.predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    guessed = np.argmax(logits, axis=-1)
    labels = prediction.label_ids
    mask = labels != -100
    return {"accuracy": float((guessed[mask] == labels[mask]).mean()) if mask.any() else 0.0}


def _metrics(raw: dict[str, Any], *, prefix: str) -> dict[str, float]:
    return {
        key.removeprefix(prefix): _round(value)
        for key, value in raw.items()
        if isinstance(value, int | float) and "runtime" not in key and "per_second" not in key
    }


def _round(value: Any) -> float:
    return round(float(value), 5)


# -- saving ------------------------------------------------------------------------


def _save(
    trainer: Any,
    tokenizer: Any,
    params: FineTuneParams,
    base: ModelSpec,
    folder: Path,
    device: str,
    *,
    task: str,
    labels: list[str],
) -> dict[str, Any]:
    """Write the trained model (or adapter) and return its registry entry (shared.finetuned)."""
    model = trainer.model
    entry: dict[str, Any] = {"task": task}
    if params.strategy == "full":
        target = folder / "model"
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
        return {**entry, "source": "model"}
    adapter = folder / "adapter"
    model.save_pretrained(adapter)
    if labels:  # the head's shape and names: the base loads with this config (loading.py)
        config = model.get_base_model().config
        config.save_pretrained(adapter)
        _drop_quantization(adapter / "config.json")
    if params.merge:
        return {**entry, "source": _merge(base, params, adapter, folder, device, labels, tokenizer)}
    served = base.model_dump(
        include={
            "dtype",
            "device_map",
            "quantization",
            "revision",
            "gguf_file",
            "trust_remote_code",
        },
        exclude_defaults=True,
    )
    if task == base.task:
        served.update(defaults=dict(base.defaults), limits=dict(base.limits))
    return {**entry, **served, "source": base.location, "adapter": "adapter"}


def _drop_quantization(config_file: Path) -> None:
    """A QLoRA adapter's config must not make the served base load in 4-bit by itself."""
    config = json.loads(config_file.read_text())
    if config.pop("quantization_config", None) is not None:
        config_file.write_text(json.dumps(config, indent=2))


def _merge(
    base: ModelSpec,
    params: FineTuneParams,
    adapter: Path,
    folder: Path,
    device: str,
    labels: list[str],
    tokenizer: Any,
) -> str:
    """Apply the adapter to a full-precision copy of the base, merge, save as a plain model."""
    from peft import PeftModel

    plain = params.model_copy(update={"strategy": "lora"})
    unquantized = base.model_copy(update={"quantization": Quantization()})
    model = models_.load_base(unquantized, plain, labels=labels, device=device, tokenizer=tokenizer)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(folder / "model")
    tokenizer.save_pretrained(folder / "model")
    shutil.rmtree(adapter)
    return "model"
