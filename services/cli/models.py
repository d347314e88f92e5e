"""``pipeq models``: the registry, what workers hold, and whether each model works.

- ``list`` reads the registry (no torch) and asks running workers what they hold
  (Celery remote control, see :mod:`services.worker.inventory`), so it shows memory
  for loaded models without touching one.
- ``check`` loads models in this process, runs one input through each, and
  reports load time and memory; it pins ``--device`` before torch is imported.
- ``build-tiny`` writes tiny random models and a registry for them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from services.cli.output import compact, table
from shared.errors import PipeqError, UnknownModel, translating
from shared.logs import configure_logging
from shared.registry import ModelSpec, Registry, configured_registry
from shared.settings import Settings, get_settings


@click.group()
def models() -> None:
    """Registered models."""


def ask_workers(settings: Settings, timeout: float) -> dict[str, dict[str, Any]]:
    """Worker name -> its inventory, from the workers that answer within ``timeout``."""
    from services.worker.inventory import COMMAND
    from shared.celery_app import make_app

    app = make_app(settings)
    with translating("asking the workers what they hold"):
        replies = app.control.broadcast(COMMAND, reply=True, timeout=timeout)
    found: dict[str, dict[str, Any]] = {}
    for reply in replies or []:
        for worker, inventory in reply.items():
            if isinstance(inventory, dict) and "models" in inventory:
                found[worker] = inventory
    return found


def _every_spec(registry: Registry, settings: Settings) -> tuple[list[ModelSpec], set[str]]:
    """The registry's models, then those fine-tune jobs made (in the model store), and the
    aliases of the latter; an entry in the store that does not read is warned about."""
    from shared import finetuned

    found, broken = finetuned.every(settings.resolved_model_store)
    for problem in broken:
        click.echo(f"warning: {problem}", err=True)
    made = [spec for spec in found if spec.alias not in registry]
    return [*registry.specs.values(), *made], {spec.alias for spec in made}


def _entry(
    spec: ModelSpec, workers: dict[str, dict[str, Any]], *, fine_tuned: bool
) -> dict[str, Any]:
    loaded = [
        {"worker": worker, **held}
        for worker, inventory in sorted(workers.items())
        for held in inventory["models"]
        if held.get("alias") == spec.alias
    ]
    return {
        "alias": spec.alias,
        "task": spec.task,
        "queue": spec.queue,
        "placement": spec.placement,
        "dtype": spec.dtype,
        "quantization": spec.quantization.label,
        "gguf_file": spec.gguf_file,
        "trust_remote_code": spec.trust_remote_code,
        "fine_tuned": fine_tuned,
        "loaded": loaded,
    }


def _loaded_cell(loaded: list[dict[str, Any]]) -> str:
    from services.worker.memory import mib

    return "; ".join(
        f"{mib(int(held['bytes']))} on {held['worker']}"
        + (f" ({held['in_use']} in use)" if held.get("in_use") else "")
        for held in loaded
    )


@models.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 60),
    default=1.0,
    show_default=True,
    help="Seconds to wait for running workers to say what they hold.",
)
@click.option("--registry-only", is_flag=True, help="Do not ask the workers.")
def list_models(as_json: bool, timeout: float, registry_only: bool) -> None:
    """Every alias with its task, placement, dtype and quantization; memory where loaded."""
    settings = get_settings()
    registry = configured_registry(settings)
    specs, made = _every_spec(registry, settings)
    if not specs:
        click.echo(f"warning: the registry {registry.path} has no models", err=True)
    workers: dict[str, dict[str, Any]] = {}
    if not registry_only:
        try:
            workers = ask_workers(settings, timeout)
        except PipeqError as exc:
            click.echo(f"warning: {exc}; showing the registry only", err=True)
    entries = [_entry(spec, workers, fine_tuned=spec.alias in made) for spec in specs]
    if as_json:
        summary = {
            name: {key: value for key, value in inventory.items() if key != "models"}
            for name, inventory in workers.items()
        }
        payload = {"registry": str(registry.path), "workers": summary, "models": entries}
        click.echo(json.dumps(payload))
        return
    columns = ["alias", "task", "queue", "placement", "dtype", "quantization"]
    rows = [
        [
            *(str(e[c]) for c in columns),
            "fine-tune" if e["fine_tuned"] else "registry",
            _loaded_cell(e["loaded"]),
        ]
        for e in entries
    ]
    click.echo(table(rows, [*columns, "from", "loaded"]))
    if not registry_only:
        click.echo(f"\n{len(workers)} worker(s) answered within {timeout:g} s")


@models.command()
@click.argument("aliases", nargs=-1)
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per model, per line.")
def check(aliases: tuple[str, ...], device: str, as_json: bool) -> None:
    """Load each model (or ALIASES), run one input through it, report load time and memory.

    Exits 1 if any model fails.
    """
    from services.worker.device import check_visible, pin_device

    placement = pin_device(device)  # before anything imports torch
    check_visible(placement)
    _quiet()
    from services.worker.check import check_model
    from services.worker.memory import mib

    settings = get_settings()
    configure_logging("WARNING", as_json=settings.log_json)
    every = {spec.alias: spec for spec in _every_spec(configured_registry(settings), settings)[0]}
    for alias in aliases:
        if alias not in every:
            raise UnknownModel(
                f"unknown model {alias!r}: not in the registry, nor made by a fine-tune job"
            )
    specs = [every[alias] for alias in aliases] or list(every.values())
    reports = [check_model(spec, device=placement.torch_device) for spec in specs]
    if as_json:
        for report in reports:
            click.echo(json.dumps(report.as_dict(), default=str))
    else:
        rows = [
            [
                r.alias,
                "ok" if r.ok else "FAILED",
                f"{r.load_seconds:.2f} s" if r.ok else "",
                mib(r.tensor_bytes) if r.ok else "",
                mib(r.rss_delta) if r.ok else "",
                f"{r.run_ms:.1f} ms" if r.ok else "",
                ",".join(r.devices),
                "+".join(r.dtypes),
                r.quantization,
                compact(r.output, 40) if r.ok else r.error,
            ]
            for r in reports
        ]
        headers = ["alias", "status", "load", "tensors", "RSS +", "run", "device", "dtype"]
        click.echo(table(rows, [*headers, "quantization", "output / error"]))
    if not all(report.ok for report in reports):
        sys.exit(1)


def _quiet() -> None:
    from services.worker.main import QUIET_ENVIRONMENT

    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


@models.command(name="build-tiny")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--task", "tasks", multiple=True, help="Only these tasks (default: all).")
def build_tiny(folder: Path, tasks: tuple[str, ...]) -> None:
    """Build a tiny random model for every task in FOLDER, with a registry file."""
    configure_logging("INFO")
    _quiet()
    from services.worker.tiny import build_all

    registry = build_all(folder, tasks=list(tasks) or None).resolve()
    click.echo(f"wrote {registry}; use it with PIPEQ_MODELS={registry}")


def register(cli: click.Group) -> None:
    cli.add_command(models)
