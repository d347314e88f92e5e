"""The memory budget: lazy loads, least-recently-used eviction, never a model a job holds.

Three aliases of the same tiny classifier, each S bytes of tensors; budgets are
multiples of S measured here, so the tests do not depend on the model's size.
"""

from __future__ import annotations

import gc
import logging
import threading
import weakref
from pathlib import Path

import pytest
import tomli_w

from services.worker.handlers import Loaded, handler_for
from services.worker.registry import Models
from shared.errors import ModelFailure
from shared.registry import Registry, load_registry

ALIASES = ("a", "b", "c")


@pytest.fixture(scope="module")
def registry(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    folder = str(tiny_registry.parent / "tiny-text-classification")
    entries = {name: {"task": "text-classification", "source": folder} for name in ALIASES}
    path = tmp_path_factory.mktemp("budget") / "models.toml"
    path.write_text(tomli_w.dumps({"models": entries}))
    return load_registry(path)


@pytest.fixture(scope="module")
def size(registry: Registry) -> int:
    return Models(registry, device="cpu", queues=("nlp",)).get("a").tensor_bytes


def _models(registry: Registry, budget: float, *, wait: float = 5.0) -> Models:
    return Models(registry, device="cpu", queues=("nlp",), budget=int(budget), wait_seconds=wait)


def _run(loaded: Loaded) -> str:
    handler = handler_for("text-classification")
    params = handler.params(loaded.spec, {})
    return str(handler.predict(loaded, ["good"], params)[0]["label"])


def _events(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.model for r in caplog.records if getattr(r, "event", None) == event]  # type: ignore[attr-defined]


def test_past_the_budget_loads_on_first_use_and_evicts_the_least_recent(
    registry: Registry, size: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.worker.registry")
    models = _models(registry, 2.5 * size)
    assert models.load_all() == ["a", "b"]
    assert sorted(models.loaded) == ["a", "b"] and models.used == 2 * size
    _run(models.get("a"))  # a is now more recent than b
    assert _run(models.get("c")) in ("NEGATIVE", "POSITIVE")
    assert sorted(models.loaded) == ["a", "c"] and models.used <= 2.5 * size
    assert _events(caplog, "model_loaded") == ["a", "b", "c"]
    assert _events(caplog, "model_evicted") == ["b"]
    evicted = next(r for r in caplog.records if getattr(r, "event", None) == "model_evicted")
    assert evicted.bytes == size and "freed in" in evicted.getMessage()  # type: ignore[attr-defined]
    loaded = next(r for r in caplog.records if getattr(r, "event", None) == "model_loaded")
    assert loaded.tensor_bytes == size and loaded.load_seconds > 0  # type: ignore[attr-defined]


def test_no_budget_keeps_everything(registry: Registry) -> None:
    models = Models(registry, device="cpu", queues=("nlp",))
    assert models.load_all() == list(ALIASES) and models.budget is None


def test_a_held_model_is_never_evicted(registry: Registry, size: int) -> None:
    models = _models(registry, 1.5 * size, wait=0.3)
    held = models.get("a")
    assert models.held("a") == 1
    with pytest.raises(ModelFailure, match=r"no room for model 'b'.*held by running jobs \(a\)"):
        models.get("b")
    assert list(models.loaded) == ["a"] and _run(held)
    del held
    assert models.held("a") == 0
    models.get("b")
    assert list(models.loaded) == ["b"]


def test_a_load_waits_for_the_job_that_holds_its_room(registry: Registry, size: int) -> None:
    models = _models(registry, 1.5 * size, wait=30)
    held: list[Loaded] = [models.get("a")]
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.append(_run(models.get("b"))))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive() and list(models.loaded) == ["a"]  # waiting, a untouched
    held.clear()  # the job holding a ends
    waiter.join(30)
    assert got and list(models.loaded) == ["b"]


def test_eviction_frees_the_model(registry: Registry, size: int) -> None:
    models = _models(registry, 1.5 * size)
    model = weakref.ref(models.get("a").model)
    models.get("b")
    gc.collect()
    assert model() is None


def test_larger_than_the_budget_alone_still_loads(registry: Registry, size: int) -> None:
    models = _models(registry, size / 2)
    assert _run(models.get("a")) and list(models.loaded) == ["a"]
    models.get("b")
    assert list(models.loaded) == ["b"]


def test_threads_share_one_load_and_respect_the_budget(
    registry: Registry, size: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="services.worker.registry")
    models = _models(registry, 2.5 * size, wait=60)
    start = threading.Barrier(6)
    errors: list[BaseException] = []
    peak = [0]

    def first_use() -> None:
        start.wait()
        _run(models.get("a"))

    threads = [threading.Thread(target=first_use) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert _events(caplog, "model_loaded") == ["a"]  # six threads, one load

    def churn(index: int) -> None:
        try:
            for step in range(12):
                loaded = models.get(ALIASES[(index + step) % 3])
                peak[0] = max(peak[0], len(models.loaded))
                _run(loaded)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and peak[0] <= 2
    assert models.used <= 2.5 * size
    assert all(models.held(name) == 0 for name in ALIASES)
    assert len(_events(caplog, "model_evicted")) >= 1
