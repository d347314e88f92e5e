"""The HTTP gateway: pipeq for services that do not speak AMQP (``pipeq gateway``).

::

    HTTP ──Bearer key──> auth.py (tenant) ──> routes.py ──> service.py
                                                  parse_job (shared/jobs.py)
                                                  Client.submit_request (row, then publish)
                                                  tenant-scoped reads (shared/db/tenancy.py)
    events.py     server-sent events: the job row polled until it ends
    webhooks.py   finished jobs with a callback POSTed, signed, retried (one loop per process)
    health.py     /healthz, /readyz, /metrics;  errors.py: pipeq errors -> HTTP statuses

It imports no torch: a gateway host needs the core install plus ``pipeq[gateway]``.
"""
