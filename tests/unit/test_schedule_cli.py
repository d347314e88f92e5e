"""``pipeq schedule add`` refuses what it cannot run, before anything is stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli import cli
from shared.db import migrate
from shared.errors import InvalidSchedule, UnsupportedTask

ADD = ["schedule", "add", "x", "text-classification", "-m", "tiny"]


@pytest.fixture
def runner(embedded_env: Path) -> CliRunner:
    migrate.upgrade()
    return CliRunner()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--cron", "@daily", "--every", "1m", "-t", "x"], "exactly one of --cron or --every"),
        (["-t", "x"], "exactly one of --cron or --every"),
        (["--every", "1m"], "exactly one of --text, --input or --file"),
        (["--every", "1m", "-t", "x", "--params", "[1]"], "must be a JSON object"),
        (["--every", "1m", "--input", "{oops"], "not JSON"),
    ],
)
def test_usage_errors(runner: CliRunner, extra: list[str], message: str) -> None:
    result = runner.invoke(cli, [*ADD, *extra])
    assert result.exit_code == 2 and message in result.output
    assert runner.invoke(cli, ["schedule", "list", "--json"]).output == ""


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ([*ADD, "--cron", "61 * * * *", "-t", "x"], InvalidSchedule),
        ([*ADD, "--every", "soon", "-t", "x"], InvalidSchedule),
        ([*ADD, "--every", "1.5s", "-t", "x"], InvalidSchedule),
        (
            ["schedule", "add", "x", "no-such-task", "--every", "1m", "-m", "t", "-t", "x"],
            UnsupportedTask,
        ),
    ],
)
def test_bad_schedules_are_refused(runner: CliRunner, args: list[str], error: type) -> None:
    result = runner.invoke(cli, args)
    assert isinstance(result.exception, error), result.output
    assert runner.invoke(cli, ["schedule", "list", "--json"]).output == ""
