# syntax=docker/dockerfile:1
# pipeq gateway, beat and migrations: the core and the gateway extra, no torch. Build from the
# repository root:
#   docker build -f deploy/docker/slim.Dockerfile -t pipeq-slim .
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/pipeq/src
COPY pyproject.toml README.md ./
COPY shared shared
COPY services services
COPY migrations migrations
RUN pip install '.[gateway]'

RUN useradd --system --uid 10001 --home-dir /var/lib/pipeq pipeq \
    && mkdir -p /var/lib/pipeq \
    && chown -R pipeq /var/lib/pipeq
USER 10001
ENV PIPEQ_HOME=/var/lib/pipeq \
    PIPEQ_LOG_JSON=true
EXPOSE 8000
ENTRYPOINT ["pipeq"]
CMD ["gateway", "--host", "0.0.0.0", "--port", "8000"]
