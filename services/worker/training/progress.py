"""Training progress to the job row, and the loss curve drawn from the Trainer's log.

:class:`Progress` is a ``TrainerCallback`` beside the job's own
(``JobControl.trainer_callback()``, which stops training when the job is
cancelled or timed out): on every step and log it reports step of total,
epoch, the latest loss, the latest eval metrics and the time left; the
supervisor writes it to the row with the next heartbeat.

:func:`draw_loss_curve` writes a PNG with Pillow (already a worker dependency:
no plotting library for one line chart).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from services.worker.control import JobControl


class Progress:
    """Builds the progress dict; :meth:`callback` makes the ``TrainerCallback``."""

    def __init__(self, control: JobControl, *, artifact: str) -> None:
        self.control = control
        self.artifact = artifact
        self.loss: float | None = None
        self.eval: dict[str, float] = {}
        self._started = time.monotonic()
        self._first_step: int | None = None

    def report(self, state: Any) -> None:
        step, total = int(state.global_step), int(state.max_steps)
        if self._first_step is None:
            self._first_step = step
            self._started = time.monotonic()
        done = step - self._first_step
        left = None
        if done > 0 and total > step:
            left = round((time.monotonic() - self._started) / done * (total - step), 1)
        self.control.report(
            {
                "stage": "training",
                "step": step,
                "max_steps": total,
                "epoch": round(float(state.epoch or 0.0), 3),
                "loss": self.loss,
                "eval": self.eval,
                "eta_seconds": 0.0 if total and step >= total else left,
                "artifact": self.artifact,
            }
        )

    def logged(self, logs: dict[str, Any]) -> None:
        if "loss" in logs and _finite(logs["loss"]):
            self.loss = round(float(logs["loss"]), 5)
        found = {
            key.removeprefix("eval_"): round(float(value), 5)
            for key, value in logs.items()
            if key.startswith("eval_") and _finite(value) and "runtime" not in key
            and "per_second" not in key
        }  # fmt: skip
        if found:
            self.eval = found

    def callback(self) -> Any:
        from transformers import TrainerCallback

        progress = self

        class ReportProgress(TrainerCallback):  # type: ignore[misc]
            def on_train_begin(self, args: Any, state: Any, ctl: Any, **kwargs: Any) -> Any:
                progress.report(state)

            def on_step_end(self, args: Any, state: Any, ctl: Any, **kwargs: Any) -> Any:
                progress.report(state)

            def on_log(
                self, args: Any, state: Any, ctl: Any, logs: Any = None, **kwargs: Any
            ) -> Any:
                progress.logged(dict(logs or {}))
                progress.report(state)

        return ReportProgress()


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def loss_points(log_history: list[dict[str, Any]]) -> tuple[list[tuple[int, float]], ...]:
    """(training loss, eval loss) as (step, value) points from ``Trainer.state.log_history``."""
    train = [(int(e["step"]), float(e["loss"])) for e in log_history if _finite(e.get("loss"))]
    held = [
        (int(e["step"]), float(e["eval_loss"])) for e in log_history if _finite(e.get("eval_loss"))
    ]
    return train, held


def draw_loss_curve(
    path: Path, train: list[tuple[int, float]], held: list[tuple[int, float]], *, title: str
) -> Path:
    """A 640x400 PNG: training loss as a line, eval loss as dots, with labelled axes."""
    from PIL import Image, ImageDraw

    width, height, margin = 640, 400, 56
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    points = train + held
    steps = [step for step, _ in points] or [0, 1]
    values = [value for _, value in points] or [0.0, 1.0]
    x0, x1 = min(steps), max(max(steps), min(steps) + 1)
    y0, y1 = min(values), max(values)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 0.5, y1 + 0.5

    def xy(step: float, value: float) -> tuple[float, float]:
        x = margin + (step - x0) / (x1 - x0) * (width - 2 * margin)
        y = height - margin - (value - y0) / (y1 - y0) * (height - 2 * margin)
        return x, y

    draw.rectangle([margin, margin, width - margin, height - margin], outline="black")
    draw.text((margin, 18), title, fill="black")
    for fraction in (0.0, 0.5, 1.0):
        value = y0 + fraction * (y1 - y0)
        _, y = xy(x0, value)
        draw.text((4, y - 6), f"{value:.3g}", fill="black")
        step = x0 + fraction * (x1 - x0)
        x, _ = xy(step, y0)
        draw.text((x - 10, height - margin + 6), f"{step:.0f}", fill="black")
    draw.text((width // 2 - 12, height - 22), "step", fill="black")
    if len(train) > 1:
        draw.line([xy(*point) for point in train], fill=(31, 119, 180), width=2)
    for point in train[:1] if len(train) == 1 else []:
        x, y = xy(*point)
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(31, 119, 180))
    for point in held:
        x, y = xy(*point)
        draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=(255, 127, 14))
    draw.text((width - margin - 150, margin + 6), "train loss", fill=(31, 119, 180))
    draw.text((width - margin - 150, margin + 20), "eval loss", fill=(255, 127, 14))
    image.save(path, format="PNG")
    return path
