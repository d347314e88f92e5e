"""The CLI as a user drives it, on the embedded default: separate producer and worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from tests.helpers import PIPEQ, REPO, WorkerProcess, pipeq


def test_submit_wait_status_jobs(embedded_worker: WorkerProcess, cli_env: dict[str, str]) -> None:
    done = pipeq(
        "submit",
        "text-classification",
        "--model",
        "tiny-text-classification",
        "--text",
        "I love it",
        "--text",
        "I hate it",
        "--params",
        '{"top_k": 1}',
        "--wait",
        "--timeout",
        "60",
        "--json",
        env=cli_env,
    )
    job = json.loads(done.stdout)
    assert {"id", "state", "task", "model", "result", "error"} <= set(job)
    assert job["state"] == "SUCCEEDED" and job["error"] is None
    assert len(job["result"]) == 2 and all(len(r) == 1 for r in job["result"])

    shown = json.loads(pipeq("status", job["id"][:8], "--json", env=cli_env).stdout)
    assert shown == job

    human = pipeq("status", job["id"], env=cli_env).stdout
    assert "SUCCEEDED" in human and "tiny-text-classification" in human

    listed = pipeq("jobs", "--state", "SUCCEEDED", "--limit", "5", env=cli_env).stdout
    assert job["id"][:8] in listed


def test_text_from_a_file(
    embedded_worker: WorkerProcess, cli_env: dict[str, str], tmp_path: Path
) -> None:
    text = tmp_path / "review.txt"
    text.write_text("what a great day")
    done = pipeq(
        "submit",
        "text-classification",
        "-m",
        "tiny-text-classification",
        "--file",
        str(text),
        "--wait",
        "--json",
        env=cli_env,
    )
    assert json.loads(done.stdout)["state"] == "SUCCEEDED"


def test_images_and_sounds_from_files(
    embedded_worker: WorkerProcess, cli_env: dict[str, str], tmp_path: Path
) -> None:
    from services.worker.tiny import sample_media

    picture = tmp_path / "shapes.jpg"
    picture.write_bytes(sample_media.image_bytes(image_format="JPEG"))
    sound = tmp_path / "chirp.ogg"
    sound.write_bytes(sample_media.audio_bytes(rate=44_100, audio_format="OGG", subtype="VORBIS"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a picture")
    runs = [
        ("object-detection", picture, "SUCCEEDED"),
        ("automatic-speech-recognition", sound, "SUCCEEDED"),
        ("image-classification", broken, "FAILED"),
    ]
    for task, path, state in runs:
        done = pipeq(
            "submit",
            task,
            "-m",
            f"tiny-{task}",
            "--file",
            str(path),
            "--wait",
            "--json",
            env=cli_env,
            check=False,
        )
        job = json.loads(done.stdout)
        assert job["state"] == state, job["error"]
        if task == "automatic-speech-recognition":
            assert isinstance(job["result"]["text"], str) and job["result"]["text"]
    assert job["error"]["message"] == (
        "inputs (broken.png): not an image pipeq reads (PNG, JPEG, WEBP)"
    )
    assert done.returncode == 1


def test_refusals_at_submit_are_clear(cli_env: dict[str, str]) -> None:
    bad = pipeq(
        "submit",
        "text-classification",
        "-m",
        "tiny-text-classification",
        "-t",
        "x",
        "--params",
        '{"top_k": -1}',
        env=cli_env,
        check=False,
    )
    assert bad.returncode == 2
    assert "error: parameter 'top_k'" in bad.stderr and "Traceback" not in bad.stderr
    unknown = pipeq("submit", "sing", "-m", "x", "-t", "x", env=cli_env, check=False)
    assert unknown.returncode == 2 and "unknown task 'sing'" in unknown.stderr
    both = pipeq("submit", "text-classification", "-m", "x", env=cli_env, check=False)
    assert both.returncode == 2 and "exactly one of" in both.stderr
    absent = pipeq(
        "submit",
        "fill-mask",
        "-m",
        "x",
        "-t",
        "x",
        "--params",
        "@nope.json",
        env=cli_env,
        check=False,
    )
    assert absent.returncode == 2 and "Traceback" not in absent.stderr
    assert "Invalid value for --params: cannot read nope.json: No such file" in absent.stderr
    typo = pipeq("jobs", "--task", "text-clasification", env=cli_env, check=False)
    assert typo.returncode == 2 and "'text-clasification' is not one of" in typo.stderr


def test_submit_before_db_upgrade_names_the_fix(cli_env: dict[str, str], tmp_path: Path) -> None:
    env = dict(cli_env, PIPEQ_HOME=str(tmp_path / "never-upgraded"))
    done = pipeq("submit", "fill-mask", "-m", "x", "-t", "x", env=env, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "the database has no table 'jobs'" in done.stderr
    assert "run `pipeq db upgrade` against this database first" in done.stderr


def test_a_worker_refuses_a_registry_that_is_not_there_and_a_gpu_it_cannot_see(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    typo = tmp_path / "modles.toml"
    missing = pipeq("worker", "-Q", "nlp", env=dict(cli_env, PIPEQ_MODELS=str(typo)), check=False)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (
        f"error: no registry at {typo} (PIPEQ_MODELS names a file that is absent)"
    )
    # CUDA_VISIBLE_DEVICES=99: no machine has that GPU, so none is visible, CUDA or not.
    unseen = pipeq("worker", "-Q", "nlp", "--device", "cuda:99", env=cli_env, check=False)
    assert unseen.returncode == 2 and "Traceback" not in unseen.stderr
    assert "error: --device cuda:99: this process sees 0 GPU(s)" in unseen.stderr


def test_a_failed_job_exits_1_with_its_reason(
    embedded_worker: WorkerProcess, cli_env: dict[str, str]
) -> None:
    done = pipeq(
        "submit",
        "text-classification",
        "-m",
        "ghost",
        "-t",
        "x",
        "--wait",
        "--json",
        env=cli_env,
        check=False,
    )
    assert done.returncode == 1
    job = json.loads(done.stdout)
    assert job["state"] == "FAILED"
    assert job["error"] == {
        "type": "unknown_model",
        "message": "unknown model 'ghost': not in the registry",
    }


def test_cancel_a_queued_job(cli_env: dict[str, str], tmp_path: Path) -> None:
    # A queue with no worker: the job stays QUEUED until cancelled.
    env = dict(cli_env, PIPEQ_HOME=str(tmp_path / "no-worker"))
    pipeq("db", "upgrade", env=env)
    job = json.loads(
        pipeq(
            "submit",
            "text-classification",
            "-m",
            "tiny-text-classification",
            "-t",
            "x",
            "--json",
            env=env,
        ).stdout
    )
    assert job["state"] == "QUEUED"
    cancelled = json.loads(pipeq("cancel", job["id"], "--json", env=env).stdout)
    assert cancelled["state"] == "CANCELLED"
    again = pipeq("cancel", job["id"][:8], env=env)
    assert f"note: job {job['id']} had already ended (CANCELLED)" in again.stderr
    missing = pipeq("status", "ffffffff", env=env, check=False)
    assert missing.returncode == 1 and "no job 'ffffffff'" in missing.stderr

    waited = pipeq(
        "submit", "fill-mask", "-m", "tiny-fill-mask", "-t", "[MASK]", "--wait", "--timeout",
        "0.5", "--json", env=env, check=False,
    )  # fmt: skip
    assert waited.returncode == 3, waited.stderr
    still = json.loads(waited.stdout)
    assert still["state"] == "QUEUED"
    assert f"error: job {still['id']} is still QUEUED after 0.5 s; it goes on" in waited.stderr


def test_demo(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIPEQ_")}
    env["PIPEQ_HOME"] = str(tmp_path / "demo")
    done = pipeq("demo", env=env, timeout=600)
    out = done.stdout
    assert "SUCCEEDED" in out and "unknown model 'no-such-model'" in out
    assert "refused at submit" in out and "worker stopped (exit 0)" in out
    assert out.count("SUCCEEDED") >= 2


def test_ctrl_c_while_the_broker_is_away_leaves_no_job_queued(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = dict(
        cli_env,
        PIPEQ_HOME=str(tmp_path / "interrupted"),
        PIPEQ_BROKER_URL="amqp://guest:guest@127.0.0.1:1//",  # nothing listens: retried 30 s
    )
    pipeq("db", "upgrade", env=env)
    args = ["submit", "fill-mask", "-m", "tiny-fill-mask", "-t", "[MASK]", "--idempotency-key", "k"]
    with subprocess.Popen(
        [*PIPEQ, *args],
        env=env,
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background by a shell (``make test &``) runs with SIGINT
        # ignored, and a child inherits that: the Ctrl-C below would never arrive.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as submit:
        listed = ""
        while not listed:  # the row is in, the publish is being retried
            assert submit.poll() is None, "submit ended before the interrupt"
            listed = pipeq("jobs", "--json", env=env).stdout
        submit.send_signal(signal.SIGINT)
        _, stderr = submit.communicate(timeout=30)
    assert submit.returncode == 130, stderr
    (job,) = [json.loads(line) for line in pipeq("jobs", "--json", env=env).stdout.splitlines()]
    assert job["state"] == "FAILED" and job["error"]["message"] == "not queued: interrupted"
    assert job["idempotency_key"] is None  # the same key may be submitted again
