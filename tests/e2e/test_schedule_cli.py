"""``pipeq schedule`` and ``pipeq beat`` as a user drives them, on the embedded default."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from shared.client import message_within
from shared.jobs import parse_job
from tests.helpers import REPO, pipeq

MODEL = "tiny-text-classification"


def test_schedules_are_managed_from_the_cli(cli_env: dict[str, str]) -> None:
    added = pipeq(
        "schedule",
        "add",
        "nightly",
        "text-classification",
        "--cron",
        "0 3 * * *",
        "-m",
        MODEL,
        "-t",
        "good night",
        env=cli_env,
    ).stdout
    assert "schedule nightly: cron 0 3 * * *" in added and "T03:00:00+00:00" in added
    taken = pipeq(
        "schedule",
        "add",
        "nightly",
        "text-classification",
        "--every",
        "10m",
        "-m",
        MODEL,
        "--input",
        '["a", "b"]',
        "--priority",
        "5",
        env=cli_env,
        check=False,
    )
    assert taken.returncode == 2 and "a schedule named 'nightly' exists" in taken.stderr
    pipeq("schedule", "pause", "nightly", env=cli_env)
    (line,) = pipeq("schedule", "list", "--json", env=cli_env).stdout.splitlines()
    view = json.loads(line)
    assert (view["name"], view["paused"], view["cadence"]) == ("nightly", True, "cron 0 3 * * *")
    assert "next run" in pipeq("schedule", "resume", "nightly", env=cli_env).stdout
    removed = pipeq("schedule", "remove", "nightly", env=cli_env).stdout
    assert removed.strip() == "schedule nightly removed"
    gone = pipeq("schedule", "pause", "nightly", env=cli_env, check=False)
    assert gone.returncode == 1 and "no schedule 'nightly'" in gone.stderr

    small = dict(cli_env, PIPEQ_MAX_MESSAGE_BYTES="1000")  # refused now, not at every run
    big = pipeq(
        "schedule", "add", "big", "fill-mask", "--every", "1h", "-m", MODEL, "-t", "x" * 2000,
        env=small, check=False,
    )  # fmt: skip
    assert big.returncode == 2 and "the limit is 1000 (PIPEQ_MAX_MESSAGE_BYTES)" in big.stderr
    assert pipeq("schedule", "list", env=cli_env).stdout.count("big") == 0

    # A job that fits without the run's idempotency key (some 70 bytes) but not with it.
    job = parse_job({"task": "fill-mask", "model": MODEL, "inputs": "x" * 500}).with_id()
    bare = len(json.dumps(message_within(job, 10**6)).encode())
    tight = dict(cli_env, PIPEQ_MAX_MESSAGE_BYTES=str(bare + 10))
    near = pipeq(
        "schedule", "add", "near", "fill-mask", "--every", "1h", "-m", MODEL, "-t", "x" * 500,
        env=tight, check=False,
    )  # fmt: skip
    assert near.returncode == 2 and "PIPEQ_MAX_MESSAGE_BYTES" in near.stderr


BEAT_ONCE = """
import sys
from services.cli import cli
try:
    cli.main(args=["beat", "--once"], standalone_mode=False)
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
print(code, heavy)
"""


def test_beat_runs_a_due_schedule_without_torch(cli_env: dict[str, str]) -> None:
    pipeq(
        "schedule",
        "add",
        "soon",
        "text-classification",
        "--every",
        "1s",
        "-m",
        MODEL,
        "-t",
        "x",
        env=cli_env,
    )
    time.sleep(1.1)
    done = subprocess.run(
        [sys.executable, "-c", BEAT_ONCE],
        env=cli_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.strip() == "0 []", done.stderr
    (line,) = pipeq("schedule", "jobs", "soon", "--json", env=cli_env).stdout.splitlines()
    job = json.loads(line)
    assert job["state"] == "QUEUED" and job["schedule_id"] is not None
    pipeq("schedule", "remove", "soon", env=cli_env)
    kept = json.loads(pipeq("status", job["id"], "--json", env=cli_env).stdout)
    assert kept["schedule_id"] is None and kept["id"] == job["id"]
