"""Alembic migrations: the only way pipeq's schema is made (``pipeq db upgrade``)."""
