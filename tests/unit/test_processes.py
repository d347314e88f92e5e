"""``pipeq worker --processes``: the parent's bookkeeping, on small stand-in children (real
processes, no torch), and the commands it gives real workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli import cli
from services.worker import affinity, processes
from services.worker.device import numbered
from services.worker.processes import Processes, exit_code, threads_each


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


SLEEPER = _python("import time\nwhile True: time.sleep(0.05)")


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "POLL_SECONDS", 0.02)
    monkeypatch.setattr(processes, "FIRST_PAUSE", 0.1)


def _in_thread(group: Processes) -> tuple[threading.Thread, list[int]]:
    """Run ``group`` beside the test (signal handlers are the main thread's: not installed)."""
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(group.supervise()), daemon=True)
    thread.start()
    return thread, codes


def _wait(predicate: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_names_and_threads() -> None:
    assert numbered("nlp-cpu@host", 2) == "nlp-cpu-2@host"
    assert numbered("plain", 1) == "plain-1"
    assert exit_code(-9) == 137 and exit_code(2) == 2
    assert threads_each(1) == processes.cores()
    assert threads_each(10_000) == 1


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [("max 100000", None), ("200000 100000", 2), ("50000 100000", 1), ("150000 100000", 2)],
)
def test_cores_heed_a_containers_quota(tmp_path: Path, cpu_max: str, expected: int | None) -> None:
    affinity = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert processes.cores(tmp_path / "cpu.max") == min(affinity, expected or affinity)
    assert processes.cores(tmp_path / "absent") == affinity


def test_a_configuration_refused_stops_the_others_and_sets_the_code() -> None:
    group = Processes([SLEEPER, _python("import sys; sys.exit(2)")])
    thread, codes = _in_thread(group)
    thread.join(timeout=20)
    assert codes == [2]
    assert all(child.process is None and child.restart_at is None for child in group.children)


def test_a_crashed_child_is_started_again_and_the_others_go_on(tmp_path: Path) -> None:
    marker = tmp_path / "crashed-once"
    crash_once = _python(
        f"import os, time\nif not os.path.exists({str(marker)!r}):\n"
        f"    open({str(marker)!r}, 'w').close(); os._exit(1)\n"
        "while True: time.sleep(0.05)"
    )
    group = Processes([SLEEPER, crash_once])
    thread, codes = _in_thread(group)
    try:
        _wait(lambda: group.children[0].process is not None)
        first = group.children[0].process
        crashed = group.children[1]
        # Started again: its next pause has doubled, and it runs (the sleeping second life).
        _wait(lambda: crashed.pause == 2 * processes.FIRST_PAUSE and crashed.running)
        assert group.children[0].process is first, "the sibling was restarted too"
    finally:
        group._forward(signal.SIGTERM, None)
        thread.join(timeout=20)
    assert codes == [128 + signal.SIGTERM]  # the stand-ins die of the signal


def test_a_child_that_exits_0_is_not_restarted() -> None:
    group = Processes([_python("pass")])
    thread, codes = _in_thread(group)
    thread.join(timeout=20)
    assert codes == [0]


def test_the_command_runs_each_child_with_its_own_name_threads_and_port(
    monkeypatch: pytest.MonkeyPatch, embedded_env: Path
) -> None:
    seen: list[list[list[str]]] = []
    monkeypatch.setattr(
        Processes, "run", lambda self: seen.append([child.args for child in self.children]) or 0
    )
    result = CliRunner().invoke(
        cli,
        [
            "worker",
            "-Q",
            "nlp",
            "-Q",
            "audio",
            "-p",
            "2",
            "--metrics-port",
            "9100",
            "--memory-budget",
            "1GiB",
            "-c",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    first, second = seen[0]
    host = os.uname().nodename
    for number, args in ((1, first), (2, second)):
        assert args[:4] == [sys.executable, "-m", "services.cli", "worker"]
        flags = dict(zip(args[4::2], args[5::2], strict=False))
        assert args.count("--queue") == 2 and "nlp" in args and "audio" in args
        assert flags["--processes"] == "1"
        assert flags["--torch-threads"] == str(threads_each(2))
        assert flags["--name"] == f"nlp+audio-cpu-{number}@{host}"
        assert flags["--metrics-port"] == str(9100 + number - 1)
        assert flags["--process-number"] == str(number)
        assert flags["--memory-budget"] == "1GiB" and flags["--concurrency"] == "8"
        assert flags["--lone-threads"] == str(processes.cores())  # a share it chose itself
        assert flags["--group-file"] == first[first.index("--group-file") + 1]  # one for all
        shares = affinity.group_shares(2)  # each child's threads on cores of its own
        assert flags.get("--cores") == (",".join(map(str, shares[number - 1])) if shares else None)
    assert not Path(flags["--group-file"]).exists()  # removed once the children ended
    # A count the user gave holds for every pass; a port range past 65535 is refused.
    result = CliRunner().invoke(cli, ["worker", "-Q", "nlp", "-p", "2", "--torch-threads", "3"])
    assert result.exit_code == 0, result.output
    assert "--lone-threads" not in seen[1][0]
    assert seen[1][0][seen[1][0].index("--torch-threads") + 1] == "3"
    result = CliRunner().invoke(cli, ["worker", "-Q", "nlp", "-p", "3", "--metrics-port", "65534"])
    assert result.exit_code == 2 and "past the last port, 65535" in result.output


def test_sigterm_to_the_command_reaches_every_child(tmp_path: Path) -> None:
    """The real signal path: a parent process running :class:`Processes` over two children,
    each writing a file once it runs and another when SIGTERM reaches it."""

    def child(name: str) -> list[str]:
        return _python(
            "import signal, sys, time\n"
            f"signal.signal(signal.SIGTERM, lambda *_: (open({str(tmp_path / name)!r} + "
            "'.stopped', 'w').close(), sys.exit(0)))\n"
            f"open({str(tmp_path / name)!r} + '.running', 'w').close()\n"
            "while True: time.sleep(0.05)"
        )

    script = (
        "import sys\nfrom services.worker.processes import Processes\n"
        f"sys.exit(Processes([{child('a')!r}, {child('b')!r}]).run())"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    try:
        # Both children run, so the parent's handlers were installed before it started them.
        _wait(lambda: all((tmp_path / f"{n}.running").exists() for n in "ab"))
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=20) == 0
        assert all((tmp_path / f"{n}.stopped").exists() for n in "ab")
    finally:
        parent.kill()


def test_a_stopping_group_starts_nothing() -> None:
    group = Processes([SLEEPER])
    group.stopping = True  # a signal before the first start
    assert group.supervise() == 0
    assert group.children[0].process is None


def test_a_lone_pass_takes_every_core_and_a_busy_one_its_share() -> None:
    """In fresh threads of a fresh process: OpenMP's count is per thread, but what torch also
    sets process-wide (MKL's) follows the last pass of any thread, so a thread whose own count
    already matches still sets it again after another thread changed it."""
    probe = (
        "import threading, torch\n"
        "from services.worker.threads import PassThreads\n"
        "calls, seen = [], []\n"
        "real = torch.set_num_threads\n"
        "torch.set_num_threads = lambda n: (calls.append(n), real(n))\n"
        "threads = PassThreads(busy=1, lone=3)\n"
        "def lone():\n"
        "    threads.set_for(lone=True); seen.append(torch.get_num_threads())\n"
        "def busy():\n"
        "    threads.set_for(lone=False); seen.append(torch.get_num_threads())\n"
        "for step in (lone, busy, lone):\n"
        "    t = threading.Thread(target=step); t.start(); t.join()\n"
        "PassThreads(busy=None, lone=3).set_for(lone=True)\n"
        "PassThreads(busy=2).set_for(lone=True)\n"
        "print(seen, calls)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    ).stdout
    assert out.strip() == "[3, 1, 3] [3, 1, 3]"


def test_processes_of_a_group_see_each_others_jobs_in_hand(tmp_path: Path) -> None:
    from services.worker.threads import PassThreads, Peers

    Peers.create(tmp_path / "group", 3)
    first, second = Peers(tmp_path / "group", 1), Peers(tmp_path / "group", 2)
    assert not first.others_busy() and not second.others_busy()
    second.publish(1)
    assert first.others_busy() and not second.others_busy()
    second.publish(0)
    assert not first.others_busy()
    # A lone job of the first stays on its share while the second holds one.
    calls: list[int] = []
    threads = PassThreads(busy=1, lone=2, peers=first)
    second.publish(1)
    import torch

    real = torch.set_num_threads
    try:
        torch.set_num_threads = calls.append  # type: ignore[assignment]
        threads.set_for(lone=True)
        second.publish(0)
        threads.set_for(lone=True)
    finally:
        torch.set_num_threads = real
    assert calls == [1, 2]


def test_the_gate_counts_the_jobs_in_hand() -> None:
    from services.worker.gate import Gate

    told: list[int] = []
    gate = Gate(patience=1, on_change=told.append)
    assert gate.running == 0
    gate.enter()
    gate.enter()
    assert gate.running == 2
    gate.leave()
    assert gate.running == 1
    with gate.alone():  # the one left, now exclusive
        assert gate.running == 1
    gate.leave()
    assert gate.running == 0
    assert told == [1, 2, 1, 1, 1, 0]  # enter, enter, leave, alone (in), alone (out), leave


def test_a_models_lone_passes_run_on_the_count_timed_faster(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A round of trials times each count TRIALS times, alternating; then the faster runs the
    lone passes, and after REVISIT of them another round follows a change of answer."""
    from services.worker import threads as module
    from services.worker.threads import LoneChoice

    monkeypatch.setattr(module, "REVISIT", 10)
    caplog.set_level("INFO", logger=module.__name__)
    choice = LoneChoice(lone=2, busy=1, model="m")

    def run(passes: int, cost: dict[int, float]) -> list[int]:
        picked = []
        for _ in range(passes):
            picked.append(choice.pick())
            choice.record(picked[-1], cost[picked[-1]])
        return picked

    assert run(2 * module.TRIALS, {2: 0.015, 1: 0.012}) == [2, 1] * module.TRIALS
    assert "model m: lone passes on 1 torch threads (12.0 ms an item) rather than 2" in caplog.text
    # The host changes: every core is faster now. Found at the next round, then kept.
    picked = run(10 + 2 * module.TRIALS + 1, {2: 0.009, 1: 0.012})
    assert picked == [1] * 10 + [2, 1] * module.TRIALS + [2]
    assert choice.chosen == 2


def test_slow_passes_between_rounds_do_not_change_the_choice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pass slowed by other work (a core busy elsewhere) is not compared with the other
    count's trials of a round before: only a round's own passes decide."""
    from services.worker import threads as module
    from services.worker.threads import LoneChoice

    monkeypatch.setattr(module, "REVISIT", 10)
    choice = LoneChoice(lone=2, busy=1)
    for _ in range(module.TRIALS):
        for count in (2, 1):
            assert choice.pick() == count
            choice.record(count, {2: 0.008, 1: 0.012}[count])
    for _ in range(10):
        assert choice.pick() == 2
        choice.record(2, 0.020)  # a slow spell: still two threads until the next round
    # In a round, one slow pass in TRIALS moves nothing either.
    for number in range(module.TRIALS):
        for count in (2, 1):
            assert choice.pick() == count
            slow = count == 2 and number == 0
            choice.record(count, 0.030 if slow else {2: 0.008, 1: 0.012}[count])
    assert choice.pick() == 2


def test_every_core_is_kept_unless_the_share_is_clearly_faster() -> None:
    """A round that times one thread a little faster (noise, as likely as not) keeps every
    core; one that times it faster by more than MARGIN does not."""
    from services.worker import threads as module
    from services.worker.threads import LoneChoice

    for one_thread, expected in ((0.0097, 2), (0.0085, 1)):  # against 0.010 on two threads
        choice = LoneChoice(lone=2, busy=1)
        for _ in range(2 * module.TRIALS):
            count = choice.pick()
            choice.record(count, {2: 0.010, 1: one_thread}[count])
        assert choice.chosen == expected, one_thread
    assert 0.0085 < 0.010 * (1 - module.MARGIN) < 0.0097


def test_lone_passes_are_timed_per_model_and_only_lone_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from services.worker.threads import TRIALS, PassThreads

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 0)
    threads = PassThreads(busy=1, lone=2)
    assert threads.set_for(lone=False, model="a") is None  # a busy pass: not timed
    for _ in range(TRIALS):
        for count in (2, 1):
            assert threads.set_for(lone=True, model="a") == count
            threads.ran("a", count, {2: 0.02, 1: 0.01}[count] * 4, items=4)
    assert threads.set_for(lone=True, model="a") == 1
    assert threads.set_for(lone=True, model="b") == 2  # another model is timed on its own
    threads.ran("b", None, 1.0, items=1)  # nothing to time: ignored
    assert PassThreads(busy=2).set_for(lone=True, model="a") is None  # one count: no choice
