"""Client.wait wakes on the job's end: the jobs table's trigger notifies, the listener hears."""

from __future__ import annotations

from shared import states
from shared.db import repo
from shared.db.ended import Listener
from shared.db.engine import session_scope
from shared.jobs import parse_job
from shared.settings import Settings


def _queued(settings: Settings) -> str:
    request = parse_job({"task": "fill-mask", "model": "m", "inputs": "a [MASK]"}).with_id()
    with session_scope(settings.resolved_database_url) as session:
        repo.insert_job(session, request, inline_limit=1024)
    return request.id or ""


def test_a_job_ending_notifies_its_listeners_and_other_writes_do_not(settings: Settings) -> None:
    url = settings.resolved_database_url
    listener = Listener(url)
    assert listener.enabled
    job_id, other = _queued(settings), _queued(settings)
    with listener.listening():
        with session_scope(url) as session:
            states.start(session, job_id, worker="w")  # not an end: no notice
        assert not listener.wait_for(job_id, 0.3)
        with session_scope(url) as session:
            states.cancel(session, other)  # another job's end: heard, not taken for ours
            states.fail(session, job_id, error_type="test", message="ended")
        assert listener.wait_for(job_id, 5.0)
