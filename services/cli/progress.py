"""``pipeq status ID`` for long jobs: a progress bar with the latest loss, and ``--follow``.

A running job reports progress into its row (``{"step", "max_steps", "epoch",
"loss", "eval", "eta_seconds"}`` for fine-tuning); this turns it into one line::

    progress [############------------------]  40%  step 120/300  epoch 1.20
             loss 0.4123  eval accuracy 0.91  ~2m10s left   (on one line)

``--follow`` redraws that line (in place on a terminal, one line per change
otherwise) until the job ends, then prints the job as ``status`` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from shared.jobs import JobView
from shared.states import State

WIDTH = 30


def progress_line(progress: dict[str, Any] | None, *, width: int = WIDTH) -> str | None:
    """The job's progress as a bar and figures; None if it reports no steps."""
    if not progress:
        return None
    step, total = progress.get("step"), progress.get("max_steps")
    if not isinstance(step, int) or not isinstance(total, int) or total <= 0:
        stage = progress.get("stage")
        return f"progress {stage}" if isinstance(stage, str) else None
    fraction = min(max(step / total, 0.0), 1.0)
    filled = round(fraction * width)
    parts = [
        f"[{'#' * filled}{'-' * (width - filled)}] {fraction * 100:3.0f}%",
        f"step {step}/{total}",
    ]
    if isinstance(progress.get("epoch"), int | float):
        parts.append(f"epoch {progress['epoch']:.2f}")
    if isinstance(progress.get("loss"), int | float):
        parts.append(f"loss {progress['loss']:.4f}")
    evaluation = progress.get("eval") or {}
    for key, value in evaluation.items() if isinstance(evaluation, dict) else ():
        if key in ("accuracy", "loss") and isinstance(value, int | float):
            parts.append(f"eval {key} {value:.4g}")
    eta = progress.get("eta_seconds")
    if isinstance(eta, int | float) and eta > 0:
        parts.append(f"~{_duration(eta)} left")
    return "progress " + "  ".join(parts)


def _duration(value: float) -> str:
    seconds = round(value)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def follow(
    read: Callable[[], JobView],
    *,
    interval: float = 1.0,
    echo: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> JobView:
    """Print the job's state and progress whenever they change, until it ends; returns it."""
    echo = echo or click.echo
    shown = None
    while True:
        job = read()
        line = f"{job.state:<9} " + (progress_line(job.progress) or "")
        if line != shown:
            echo(line.rstrip())
            shown = line
        if State(job.state).terminal:
            return job
        sleep(interval)
