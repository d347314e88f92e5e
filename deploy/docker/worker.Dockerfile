# syntax=docker/dockerfile:1
# pipeq worker: CUDA, torch and the model stack. Build from the repository root:
#   docker build -f deploy/docker/worker.Dockerfile -t pipeq-worker .
# The CUDA runtime libraries come with torch's cu128 wheels (the nvidia-* packages), so the
# base flavour of the CUDA image is enough; its -runtime flavour would carry a second copy.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04
FROM ${CUDA_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates libsndfile1 \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/pipeq
ENV PATH=/opt/pipeq/bin:$PATH

# The CUDA build of the exact torch that pyproject.toml pins (a test keeps them equal);
# `pip install .[worker]` then finds the pin satisfied.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
RUN pip install torch==2.13.0 --index-url ${TORCH_INDEX}

WORKDIR /opt/pipeq/src
COPY pyproject.toml README.md ./
COPY shared shared
COPY services services
COPY migrations migrations
RUN pip install '.[worker]'

RUN useradd --system --uid 10001 --home-dir /var/lib/pipeq pipeq \
    && mkdir -p /var/lib/pipeq/store /var/cache/huggingface \
    && chown -R pipeq /var/lib/pipeq /var/cache/huggingface
USER 10001
ENV PIPEQ_HOME=/var/lib/pipeq \
    PIPEQ_MODEL_STORE=/var/lib/pipeq/store \
    PIPEQ_LOG_JSON=true \
    PIPEQ_METRICS_PORT=9100 \
    HF_HOME=/var/cache/huggingface \
    HF_HUB_DISABLE_TELEMETRY=1
VOLUME ["/var/lib/pipeq/store", "/var/cache/huggingface"]
EXPOSE 9100
# /metrics answers once the worker's models are loaded and it is about to consume.
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9100/metrics', timeout=4)"]
ENTRYPOINT ["pipeq"]
CMD ["worker", "--queue", "nlp", "--device", "cuda:0"]
