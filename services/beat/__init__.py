"""``pipeq beat``: the one process that runs user schedules and keeps the service clean.

::

    main.py          take the beat lock (one active beat per database), then tick until SIGTERM
      loop.py        Beat.tick(): what is due now, and how long to sleep
        runs.py      due schedules -> one ordinary job each, submitted through shared.client
        housekeeping.py  expired jobs (and their artifacts), stale RUNNING jobs, workers seen
      lock.py        PostgreSQL advisory lock, or a lock file beside the SQLite database

Beat needs the broker and the database, never torch: housekeeping runs here,
in-process, not as Celery tasks that only a (torch) worker would consume.
"""
