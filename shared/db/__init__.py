"""pipeq's database: tables (``models``), engines and sessions (``engine``), queries (``repo``).

The schema is made only by the alembic migrations in ``migrations/``
(``pipeq db upgrade``); a test keeps these models and the migrations in step.
"""
