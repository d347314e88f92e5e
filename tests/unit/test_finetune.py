"""Fine-tuning pieces without servers: parameters, data sets, Trainer arguments, progress, store.

The whole job runs through real workers in ``tests/integration/test_finetune.py``;
here one token-classification job runs in process (LoRA, merged), the objective
and the merge option the integration tests do not cover.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from services.cli.progress import follow, progress_line
from services.worker.training.data import data_file, prepare, read_rows
from services.worker.training.job import training_arguments
from services.worker.training.progress import draw_loss_curve, loss_points
from shared import finetuned
from shared.errors import InvalidInput, InvalidParameter
from shared.jobs import JobView, parse_job
from shared.params import validate_params
from shared.params.finetune import FineTuneParams
from shared.settings import Settings

BASE = {"output": "mine", "strategy": "lora", "objective": "sequence-classification"}
CLASSIFY_COLUMNS = {
    "objective": "sequence-classification",
    "columns": {"text": "sentence", "label": "sentiment"},
}


def _params(**extra: Any) -> FineTuneParams:
    params = validate_params("fine-tune", {**BASE, **extra})
    assert isinstance(params, FineTuneParams)
    return params


def test_both_names_of_the_evaluation_strategy_are_accepted() -> None:
    assert _params(evaluation_strategy="steps").evaluation == "steps"
    assert _params(eval_strategy="no").evaluation == "no"
    assert _params().evaluation == "epoch"
    with pytest.raises(InvalidParameter, match="old name of eval_strategy"):
        _params(eval_strategy="epoch", evaluation_strategy="steps")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"no_cuda": True}, "parameter 'no_cuda': unknown parameter"),
        ({"learning_rate": 0}, "parameter 'learning_rate'"),
        ({"strategy": "full", "lora": {"r": 4}}, "parameter 'lora': only for strategy lora"),
        ({"strategy": "prefix", "merge": True}, "parameter 'merge'"),
        ({"lora": {"rank": 4}}, "parameter 'lora'"),
        ({"columns": {"sentence": "x"}}, "unknown role 'sentence'"),
        ({"strategy": "adapters"}, "parameter 'strategy'"),
    ],
)
def test_bad_parameters_are_named(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        _params(**extra)


def test_required_fields_are_checked_by_the_worker_not_the_producer() -> None:
    request = parse_job({"task": "fine-tune", "model": "m", "inputs": {}})  # a producer queues it
    params = validate_params("fine-tune", request.params)
    assert isinstance(params, FineTuneParams)
    with pytest.raises(InvalidParameter, match="'output': required"):
        params.require()


def test_trainer_arguments_use_transformers_5_names(tmp_path: Path) -> None:
    params = _params(evaluation_strategy="steps", eval_steps=7, warmup_ratio=0.1, max_steps=20)
    args = training_arguments(params, tmp_path, device="cpu", evaluate=True)
    assert args.eval_strategy == "steps" and args.eval_steps == 7
    assert args.warmup_steps == 0.1 and args.max_steps == 20 and args.use_cpu
    assert args.save_total_limit == 1
    unevaluated = training_arguments(params, tmp_path, device="cpu", evaluate=False)
    assert unevaluated.eval_strategy == "no"


def test_data_files_stay_inside_the_data_folder(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (tmp_path / "secret.csv").write_text("a\n1\n")
    (root / "ok.csv").write_text("a\n1\n")
    os.symlink(tmp_path / "secret.csv", root / "link.csv")
    assert data_file("ok.csv", root=root) == (root / "ok.csv").resolve()
    for name, message in [
        ("../secret.csv", "no '..'"),
        (str(tmp_path / "secret.csv"), "must be relative"),
        ("link.csv", "outside the data folder"),
        ("ok.txt", "pipeq reads"),
        ("missing.csv", "not a file"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            data_file(name, root=root)


def test_parquet_and_json_lines_files_are_read(tmp_path: Path) -> None:
    import datasets

    settings = Settings(home=tmp_path, finetune_max_rows=3)
    data = settings.resolved_data_dir
    data.mkdir(parents=True)
    rows = [{"text": f"row {i}", "label": i % 2} for i in range(3)]
    datasets.Dataset.from_list(rows).to_parquet(str(data / "rows.parquet"))
    (data / "rows.jsonl").write_text("".join(f'{{"text": "r{i}", "label": 1}}\n' for i in range(4)))
    assert read_rows({"file": "rows.parquet"}, settings=settings)["text"] == [
        row["text"] for row in rows
    ]
    with pytest.raises(InvalidInput, match="4 rows; the cap is 3"):
        read_rows({"file": "rows.jsonl"}, settings=settings)


def test_the_data_set_is_checked_and_split(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, finetune_max_inline_rows=10)
    rows = [{"text": f"text {i}", "label": "a" if i % 2 else "b"} for i in range(10)]
    data = prepare({"rows": rows}, _params(eval_fraction=0.2), settings=settings)
    assert (len(data.train), len(data.eval)) == (8, 2) and data.labels == ["a", "b"]
    with pytest.raises(InvalidInput, match="11 rows inline; the cap is 10"):
        prepare({"rows": [*rows, rows[0]]}, _params(), settings=settings)
    with pytest.raises(InvalidInput, match="row 3, column 'text': expected a non-empty text"):
        bad = [*rows[:3], {"text": " ", "label": "a"}]
        prepare({"rows": bad}, _params(), settings=settings)
    with pytest.raises(InvalidInput, match="1 label"):
        prepare({"rows": [{"text": "x", "label": "a"}] * 4}, _params(), settings=settings)
    with pytest.raises(InvalidInput, match='"file": PATH'):
        prepare({"path": "x.csv"}, _params(), settings=settings)


def _view(state: str, progress: dict[str, Any] | None) -> JobView:
    return JobView(
        id="j", state=state, task="fine-tune", model="m", queue="train", priority=0,
        progress=progress,
    )  # fmt: skip


def test_progress_shows_as_a_bar_with_the_latest_loss() -> None:
    line = progress_line(
        {"step": 30, "max_steps": 120, "epoch": 0.5, "loss": 0.41234, "eval": {"accuracy": 0.9},
         "eta_seconds": 130.0}
    )  # fmt: skip
    assert line is not None
    assert "[########----------------------]  25%" in line
    assert "step 30/120" in line and "loss 0.4123" in line and "eval accuracy 0.9" in line
    assert "~2m10s left" in line
    assert progress_line({"stage": "saving"}) == "progress saving"
    assert progress_line(None) is None


def test_follow_prints_each_change_until_the_job_ends() -> None:
    views = iter(
        [
            _view("QUEUED", None),
            _view("RUNNING", {"step": 1, "max_steps": 4, "loss": 1.0}),
            _view("RUNNING", {"step": 1, "max_steps": 4, "loss": 1.0}),
            _view("RUNNING", {"step": 4, "max_steps": 4, "loss": 0.5}),
            _view("SUCCEEDED", {"step": 4, "max_steps": 4, "loss": 0.5}),
        ]
    )
    printed: list[str] = []
    done = follow(lambda: next(views), echo=printed.append, sleep=lambda _: None)
    assert done.state == "SUCCEEDED"
    assert len(printed) == 4  # the repeated read printed nothing
    assert printed[1].startswith("RUNNING") and "step 1/4" in printed[1]


def test_the_loss_curve_is_a_png(tmp_path: Path) -> None:
    from PIL import Image

    history = [{"step": s, "loss": 2.0 / s} for s in range(1, 11)] + [
        {"step": 10, "eval_loss": 0.3}
    ]
    train, held = loss_points(history)
    assert len(train) == 10 and held == [(10, 0.3)]
    path = draw_loss_curve(tmp_path / "loss.png", train, held, title="t")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (640, 400)


def test_a_registered_model_is_found_in_the_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "finetunes" / "mine").mkdir(parents=True)
    assert finetuned.find(store, "mine") is None  # no entry yet: not complete
    finetuned.register(store, "mine", {"task": "text-classification", "source": "model"})
    spec = finetuned.find(store, "mine")
    assert spec is not None and spec.task == "text-classification"
    assert spec.base_dir == (store / "finetunes" / "mine").resolve()
    assert finetuned.find(store, "../mine") is None


def test_token_classification_with_lora_merged_is_served_as_a_plain_model(
    tmp_path: Path, tiny_registry: Path
) -> None:
    from services.worker.control import JobControl
    from services.worker.handlers import handler_for
    from services.worker.registry import Models
    from services.worker.training.job import fine_tune
    from shared.jobs import JobRequest
    from shared.registry import load_registry

    settings = Settings(home=tmp_path, models=tiny_registry)
    words = ["alice", "met", "bob", "in", "paris", "today"]
    tags = ["B-PER", "O", "B-PER", "O", "B-LOC", "O"]
    rows = [{"tokens": words, "tags": tags}] * 16
    params = {
        "output": "tiny-ner-tuned", "strategy": "lora", "objective": "token-classification",
        "merge": True, "max_steps": 12, "learning_rate": 3e-2, "eval_fraction": 0.25,
        "logging_steps": 3,
    }  # fmt: skip
    request = JobRequest(
        task="fine-tune", model="tiny-token-classification", inputs={"rows": rows}, params=params
    )
    result = fine_tune(request, settings=settings, device="cpu", control=JobControl("j", "l"))
    assert result["adapter"] is False and result["labels"] == ["B-LOC", "B-PER", "O"]
    assert result["metrics"]["eval"]["accuracy"] > result["metrics"]["eval_before"]["accuracy"]
    folder = settings.resolved_model_store / result["artifact"]
    assert (folder / "model" / "config.json").exists() and not (folder / "adapter").exists()

    models = Models(
        load_registry(tiny_registry), device="cpu", queues=("nlp",),
        store=settings.resolved_model_store,
    )  # fmt: skip
    loaded = models.get("tiny-ner-tuned")
    handler = handler_for("token-classification")
    params_ = handler.params(loaded.spec, {"aggregation_strategy": "none"})
    (entities,) = handler.predict(loaded, ["alice met bob in paris today"], params_)
    assert {entity["entity"] for entity in entities} <= {"B-LOC", "B-PER"}


def test_a_silent_training_job_is_requeued_and_an_inference_job_failed(db_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from services.beat.housekeeping import sweep_stale
    from shared import states
    from shared.db import repo
    from shared.db.engine import get_engine
    from shared.db.models import Job
    from shared.states import State

    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    settings = Settings(database_url=db_url, heartbeat_timeout=timedelta(minutes=10))
    ids = {}
    with Session(get_engine(db_url)) as session, session.begin():
        for task, model, inputs in [
            ("fine-tune", "base", {"rows": [{"text": "a", "label": 1}]}),
            ("text-classification", "m", "x"),
        ]:
            request = parse_job({"task": task, "model": model, "inputs": inputs}).with_id()
            repo.insert_job(session, request, inline_limit=1024)
            states.start(session, request.id or "", worker="w")
            old = now - timedelta(minutes=11)
            session.execute(
                update(Job).where(Job.id == request.id).values(heartbeat_at=old, updated_at=old)
            )
            ids[task] = request.id
    published: list[dict[str, Any]] = []
    swept = sweep_stale(settings, now=now, publish=published.append)
    assert sorted(swept) == sorted(ids.values())
    assert [message["id"] for message in published] == [ids["fine-tune"]]
    assert published[0]["inputs"] == {"rows": [{"text": "a", "label": 1}]}
    with Session(get_engine(db_url)) as session:
        assert states.current(session, ids["fine-tune"]) is State.QUEUED
        assert states.current(session, ids["text-classification"]) is State.FAILED


def _on_cuda(strategy: str) -> Any:
    import torch

    needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
    return pytest.param("cuda:0", strategy, marks=needs_gpu, id=f"cuda-{strategy}")


@pytest.mark.parametrize(
    ("device", "strategy"),
    [
        # bitsandbytes repacks 4-bit weights for inference on CPUs with AVX512-BF16 when the
        # Trainer evaluates before training; this failed training until the layers kept
        # their training layout (services/worker/training/model.py).
        pytest.param("cpu", "qlora", id="cpu-qlora-after-evaluation"),
        *(_on_cuda(strategy) for strategy in ("full", "lora", "qlora", "prefix")),
    ],
)
def test_each_strategy_trains_and_serves_on_its_device(
    tmp_path: Path, device: str, strategy: str
) -> None:
    """With an evaluation split (the default), the loss falls and the result is served on
    the device it trained on (a qlora adapter on the base as registered)."""
    import tomli_w

    from services.worker.control import JobControl
    from services.worker.handlers import handler_for
    from services.worker.memory import placement
    from services.worker.registry import Models
    from services.worker.tiny.quantizable import alias, write_registry
    from services.worker.training.job import fine_tune
    from shared.jobs import JobRequest
    from shared.registry import load_registry
    from tests.finetune_data import sentiment_rows

    quantizable = load_registry(write_registry(tmp_path / "quantizable"))
    entry = {"task": "text-classification", "source": quantizable.get(alias("fp32")).location}
    registry = tmp_path / "models.toml"
    registry.write_text(tomli_w.dumps({"models": {"m": {**entry, "dtype": "float32"}}}))
    settings = Settings(home=tmp_path / "home", models=registry)
    params = {
        "output": f"tuned-{strategy}", "strategy": strategy, **CLASSIFY_COLUMNS,
        "max_steps": 24, "learning_rate": 3e-3 if strategy == "full" else 3e-2,
        "per_device_train_batch_size": 16, "eval_fraction": 0.25, "logging_steps": 4,
    }  # fmt: skip
    request = JobRequest(
        task="fine-tune", model="m", inputs={"rows": sentiment_rows(64)}, params=params
    )
    result = fine_tune(request, settings=settings, device=device, control=JobControl("j", "l"))
    assert result["steps"] == 24 and result["eval_rows"] == 16
    assert result["last_loss"] < result["first_loss"], result["metrics"]
    assert result["adapter"] is (strategy != "full")

    models = Models(
        load_registry(registry), device=device, queues=("nlp",),
        store=settings.resolved_model_store,
    )  # fmt: skip
    loaded = models.get(f"tuned-{strategy}")
    assert placement(loaded.model)["devices"] == [device]
    handler = handler_for("text-classification")
    outputs = handler.predict(loaded, ["a lovely day", "an awful day"], handler.params(
        loaded.spec, {"top_k": None}))  # fmt: skip
    assert all({d["label"] for d in out} == {"negative", "positive"} for out in outputs)


def test_resuming_skips_a_checkpoint_its_worker_died_writing(tmp_path: Path) -> None:
    from services.worker.training.job import _last_checkpoint

    folder = tmp_path / "checkpoints"
    for step, state in ((10, '{"global_step": 10}'), (20, None), (30, '{"global_st')):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        if state is not None:
            (folder / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (folder / "checkpoint-9").mkdir()  # older, complete or not: never chosen over 10
    assert _last_checkpoint(folder) == str(folder / "checkpoint-10")
    assert _last_checkpoint(tmp_path / "none") is None


def test_every_fine_tuned_model_is_found_and_a_broken_entry_hides_no_other(
    tmp_path: Path,
) -> None:
    for name in ("good", "broken"):
        finetuned.folder_of(tmp_path, name).mkdir(parents=True)
    finetuned.register(tmp_path, "good", {"task": "text-classification", "source": "org/base"})
    (finetuned.folder_of(tmp_path, "broken") / finetuned.ENTRY).write_text('{"task": "sing"}')
    specs, broken = finetuned.every(tmp_path)
    assert [spec.alias for spec in specs] == ["good"]
    (problem,) = broken
    assert str(problem).startswith("fine-tuned model 'broken': bad pipeq-model.json: ")
    assert "\n" not in str(problem)
