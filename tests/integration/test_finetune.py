"""Fine-tuning through real workers: learning, every strategy, progress, cancel, resume, bad input.

A train worker and an nlp worker of their own (``trainenv.py``) on a private
database and vhost. The LoRA test fine-tunes the real all-MiniLM-L6-v2 backbone
on sentences generated in ``tests/finetune_data.py`` and then classifies
sentences it never saw through the nlp worker, under the new name.
"""

from __future__ import annotations

import csv
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.errors import InvalidParameter
from tests.finetune_data import sentiment_rows
from tests.helpers import PIPEQ, REPO, pipeq
from tests.integration.trainenv import INLINE_CAP, TrainEnv, train_env, write_jsonl

CLASSIFY = {
    "objective": "sequence-classification",
    "columns": {"text": "sentence", "label": "sentiment"},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainEnv]:
    with train_env(tmp_path_factory.mktemp("finetune")) as env:
        env.worker("train")
        env.worker("nlp")
        yield env


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_lora_on_minilm_learns_and_the_new_name_is_served_at_once(trained: TrainEnv) -> None:
    name = _name("minilm-sentiment")
    params = {
        "output": name,
        "strategy": "lora",
        **CLASSIFY,
        "eval_fraction": 0.25,
        "num_train_epochs": 3,
        "learning_rate": 5e-3,
        "per_device_train_batch_size": 16,
        "evaluation_strategy": "epoch",  # the old name is accepted
        "logging_steps": 2,
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
    }
    job = trained.client.submit("fine-tune", "minilm", {"rows": sentiment_rows(96)}, params)
    running = trained.wait_for(
        job.id,
        lambda j: (j.progress or {}).get("loss") is not None or j.state in ("SUCCEEDED", "FAILED"),
    )
    assert running.state == "RUNNING", running.error
    progress = running.progress or {}
    assert 0 < progress["step"] <= progress["max_steps"] == 15  # 72 rows, 16 a batch, 3 epochs
    assert progress["artifact"] == f"finetunes/{name}"
    done = trained.client.wait(job.id, timeout=300)
    assert done.state == "SUCCEEDED", done.error
    result = done.result
    before = result["metrics"]["eval_before"]["accuracy"]
    after = result["metrics"]["eval"]["accuracy"]
    print(f"MiniLM LoRA: held-out accuracy {before:.3f} before, {after:.3f} after")
    assert before <= 0.75 and after >= 0.9, (before, after)
    assert result["last_loss"] < result["first_loss"]
    assert result["adapter"] is True and result["task"] == "text-classification"
    folder = trained.store / result["artifact"]
    assert (folder / "pipeq-model.json").exists() and (folder / "adapter").is_dir()
    assert (folder / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (folder / "checkpoints").exists()

    unseen = sentiment_rows(16, held_out=True, seed=7)
    served = trained.client.submit("text-classification", name, [row["sentence"] for row in unseen])
    answer = trained.client.wait(served.id, timeout=120)
    assert answer.state == "SUCCEEDED", answer.error
    right = sum(
        out["label"] == row["sentiment"] for out, row in zip(answer.result, unseen, strict=True)
    )
    print(f"MiniLM LoRA: {right}/16 unseen sentences classified right by the nlp worker")
    assert right >= 14


def _tiny_cases(data_dir: Path) -> dict[str, tuple[str, Any, dict[str, Any], str]]:
    rows = sentiment_rows(16, seed=3)
    write_jsonl(data_dir / "lines.jsonl", [{"text": row["sentence"]} for row in rows])
    with open(data_dir / "reviews.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["sentence", "sentiment"])
        writer.writeheader()
        writer.writerows(rows)
    return {
        "full": (
            "tiny-text-generation",
            {"file": "lines.jsonl"},
            {"strategy": "full", "objective": "causal-lm", "max_steps": 24, "learning_rate": 3e-3},
            "text-generation",
        ),
        "qlora": (
            "quant-fp32",
            {"rows": rows},
            {"strategy": "qlora", **CLASSIFY, "max_steps": 24, "learning_rate": 5e-3},
            "text-classification",
        ),
        "prefix": (
            "tiny-text-classification",
            {"file": "reviews.csv"},
            {"strategy": "prefix", **CLASSIFY, "max_steps": 24, "learning_rate": 3e-2},
            "text-classification",
        ),
    }


@pytest.mark.parametrize("strategy", ["full", "qlora", "prefix"])
def test_each_strategy_reduces_the_loss_on_a_tiny_model(trained: TrainEnv, strategy: str) -> None:
    base, inputs, extra, task = _tiny_cases(trained.data_dir)[strategy]
    name = _name(f"tiny-{strategy}")
    params = {"output": name, "eval_fraction": 0, "logging_steps": 4, **extra}
    params.setdefault("per_device_train_batch_size", 8)
    job = trained.client.submit("fine-tune", base, inputs, params)
    follow = subprocess.run(
        [*PIPEQ, "status", job.id, "--follow", "--interval", "0.2"],
        env=trained.env, cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert follow.returncode == 0, follow.stderr
    done = trained.client.get(job.id)
    assert done.state == "SUCCEEDED", done.error
    assert "SUCCEEDED" in follow.stdout and f"/{extra['max_steps']}" in follow.stdout
    assert "progress [" in follow.stdout
    # a run of 24 tiny steps may end between two polls of --follow: the loss is read from the row
    assert done.progress is not None and done.progress.get("loss") is not None, done.progress
    result = done.result
    print(f"{strategy}: loss {result['first_loss']:.4f} -> {result['last_loss']:.4f}")
    assert result["last_loss"] < result["first_loss"]
    assert result["task"] == task and result["adapter"] is (strategy != "full")
    text = "I thought the movie was wonderful."
    served = trained.client.wait(trained.client.submit(task, name, text).id, timeout=120)
    assert served.state == "SUCCEEDED", served.error
    if task == "text-classification":
        assert served.result[0]["label"] in ("negative", "positive")
    else:
        assert served.result[0]["generated_text"].startswith(text)
    # Listed with the registry's models, marked as made by a fine-tune job.
    listed = pipeq("models", "list", "--registry-only", "--json", env=trained.env).stdout
    (made,) = [entry for entry in json.loads(listed)["models"] if entry["alias"] == name]
    assert made["fine_tuned"] is True and made["task"] == task


def test_cancel_stops_training_within_a_step(trained: TrainEnv) -> None:
    name = _name("cancelled")
    params = {"output": name, "strategy": "lora", **CLASSIFY, "max_steps": 100_000}
    rows = {"rows": sentiment_rows(32)}
    job = trained.client.submit("fine-tune", "tiny-text-classification", rows, params)
    trained.wait_for(job.id, lambda j: (j.progress or {}).get("step", 0) >= 3)
    trained.client.cancel(job.id)
    done = trained.client.wait(job.id, timeout=30)
    assert done.state == "CANCELLED"
    assert (done.progress or {}).get("step", 0) < 100_000
    assert not (trained.store / "finetunes" / name).exists()  # the name is free again


def test_a_killed_train_worker_resumes_from_its_last_checkpoint(trained: TrainEnv) -> None:
    name = _name("resumed")
    params = {
        "output": name, "strategy": "lora", **CLASSIFY, "max_steps": 200, "save_steps": 10,
        "per_device_train_batch_size": 4, "eval_fraction": 0, "logging_steps": 5,
    }  # fmt: skip
    rows = {"rows": sentiment_rows(32)}
    job = trained.client.submit("fine-tune", "tiny-text-classification", rows, params)
    # 200 steps: the run must outlast reading the queue's counters (rabbitmqctl, about 1 s)
    running = trained.wait_for(job.id, lambda j: (j.progress or {}).get("step", 0) >= 25)
    assert running.state == "RUNNING", running.state
    # Acked once claimed: RabbitMQ's consumer timeout has nothing to cut (early_ack.py).
    assert trained.unacked("train") == 0
    trained.workers["train"].kill()
    checkpoints = sorted((trained.store / "finetunes" / name / "checkpoints").glob("checkpoint-*"))
    assert checkpoints, "no checkpoint was written before the kill"
    trained.worker("train")
    time.sleep(2.5)  # the dead attempt's heartbeat grows older than the sweep's timeout (2 s)
    sweep = {**trained.env, "PIPEQ_HEARTBEAT_TIMEOUT": "2s", "PIPEQ_WORKER_PING_TIMEOUT": "0.2s"}
    pipeq("beat", "--once", env=sweep)  # the stale sweep puts the job back on the train queue
    done = trained.client.wait(job.id, timeout=240)
    assert done.state == "SUCCEEDED", done.error
    assert done.attempts == 2
    resumed = done.result["resumed_from"]
    assert resumed is not None and int(resumed.split("-")[1]) >= 20
    assert done.result["steps"] == 200


def _bad_cases(data_dir: Path) -> dict[str, tuple[dict[str, Any], Any, str]]:
    (data_dir.parent / "secret.csv").write_text("sentence,sentiment\nx,y\n")
    base = {"output": _name("bad"), "strategy": "lora", **CLASSIFY}
    rows = {"rows": sentiment_rows(8)}
    return {
        "missing column": (
            {**base, "columns": {"text": "review", "label": "sentiment"}},
            rows,
            "column 'review' (role text) is not in the data set",
        ),
        "strategy the model cannot take": (
            {**base, "strategy": "full"},
            rows,
            "parameter 'strategy'",
        ),
        "lora modules the model lacks": (
            {**base, "lora": {"target_modules": ["no_such_layer"]}},
            rows,
            "parameter 'lora'",
        ),
        "unknown argument": ({**base, "no_cuda": True}, rows, "parameter 'no_cuda': unknown"),
        "data set over the cap": (
            base,
            {"rows": sentiment_rows(INLINE_CAP + 1)},
            f"{INLINE_CAP + 1} rows inline; the cap is {INLINE_CAP}",
        ),
        "path outside the data folder": (base, {"file": "../secret.csv"}, "no '..'"),
        "absolute path": (base, {"file": str(data_dir.parent / "secret.csv")}, "must be relative"),
        "missing output": ({k: v for k, v in base.items() if k != "output"}, rows, "'output'"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing column",
        "strategy the model cannot take",
        "lora modules the model lacks",
        "unknown argument",
        "data set over the cap",
        "path outside the data folder",
        "absolute path",
        "missing output",
    ],
)
def test_bad_input_fails_the_job_before_training(trained: TrainEnv, case: str) -> None:
    params, inputs, message = _bad_cases(trained.data_dir)[case]
    model = "quant-nf4" if case == "strategy the model cannot take" else "tiny-text-classification"
    job_id = str(uuid.uuid4())
    # Published as a foreign producer would, so the worker's own checks are what is tested.
    job = {"id": job_id, "task": "fine-tune", "model": model, "inputs": inputs, "params": params}
    trained.publish(job)
    done = trained.wait_for(job_id, lambda j: j.state in ("FAILED", "SUCCEEDED"), timeout=90)
    assert done.state == "FAILED" and done.error is not None
    assert message in done.error.message, done.error.message
    assert not (done.progress or {}).get("step")  # training never started
    if "output" in params:
        assert not (trained.store / "finetunes" / params["output"]).exists()


def test_an_unknown_argument_is_refused_at_submit_too(trained: TrainEnv) -> None:
    params = {"output": "x", "strategy": "lora", **CLASSIFY, "evaluation_strategy": "sometimes"}
    with pytest.raises(InvalidParameter, match="evaluation_strategy"):
        trained.client.submit("fine-tune", "minilm", {"rows": []}, params)
    with pytest.raises(InvalidParameter, match="'tokenizer': unknown parameter"):
        trained.client.submit("fine-tune", "minilm", {"rows": []}, {"tokenizer": "x"})
