"""The README's plain-AMQP example, run as written against the session's RabbitMQ."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from shared.client import Client
from shared.errors import JobNotFound
from shared.settings import Settings
from tests.helpers import REPO, WorkerProcess


def readme_block(marker: str) -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"README has no python block after <!-- {marker} -->"
    return match.group(1)


def test_plain_amqp_example(
    worker: WorkerProcess, client: Client, settings: Settings, tmp_path: Path
) -> None:
    code = readme_block("amqp-example")
    assert "import shared" not in code and "services" not in code  # no pipeq import
    script = tmp_path / "publish.py"
    script.write_text(code)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIPEQ_")}
    env["AMQP_URL"] = settings.broker_url
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
    )
    job_id = done.stdout.strip()
    deadline = time.monotonic() + 60
    while True:
        try:
            job = client.wait(job_id, timeout=60)
            break
        except JobNotFound:
            assert time.monotonic() < deadline, "the worker never created the job row"
            time.sleep(0.1)
    assert job.state == "SUCCEEDED", job.error
    assert len(job.result) == 2 and {r["label"] for r in job.result} == {"POSITIVE", "NEGATIVE"}
