#!/bin/bash
# pipeq on a GPU host, in one call: CUDA tests, then make bench's batching part on cuda:0
# against a private PostgreSQL (pgserver's build) and RabbitMQ (a trimmed copy of Debian's).
# Usage (repo root, after tests/gpu/prepare.sh here): bash tests/gpu/run.sh [PHASES]
# PHASES: any of "tests bench" (default both). Figures and logs go to $OUT (default /tmp/out).
PHASES=${1:-"tests bench"}
PY=${PY:-python3}; PGPORT=${PGPORT:-5432}; AMQPPORT=${AMQPPORT:-5672}; DEVICE=${DEVICE:-cuda:0}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
T0=$(date +%s)
stamp() { echo "== [$(( $(date +%s) - T0 )) s] $*"; }
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 TOKENIZERS_PARALLELISM=false

stamp "unpack wheels"
if [ -z "$SKIP_UNPACK" ] && [ ! -f /tmp/site/.done ]; then
  mkdir -p /tmp/site
  for w in .gpu/whl/*.whl; do python3 -m zipfile -e "$w" /tmp/site || echo "UNPACK FAILED $w"; done
  touch /tmp/site/.done
fi
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi -L 2>/dev/null; nproc
$PY - <<'EOF'
import torch, transformers, peft, accelerate, bitsandbytes, celery, kombu, sqlalchemy, psycopg
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.is_available(),
      "transformers", transformers.__version__, "peft", peft.__version__, "accelerate",
      accelerate.__version__, "bnb", bitsandbytes.__version__, "celery", celery.__version__,
      "sqlalchemy", sqlalchemy.__version__, "psycopg", psycopg.__version__)
EOF

if [[ " $PHASES " == *" tests "* ]]; then
  stamp "CUDA tests"
  timeout 240 $PY -m pytest -p no:cacheprovider -q -rs --junitxml="$OUT/gpu-tests.xml" \
    tests/unit/test_gpu.py tests/unit/test_device.py tests/unit/test_loading.py \
    tests/unit/test_quantization.py tests/unit/test_oom.py tests/unit/test_budget.py \
    "tests/unit/test_observability.py::test_gpu_memory_per_device" \
    "tests/unit/test_finetune.py::test_each_strategy_trains_and_serves_on_its_device" \
    2>&1 | tee "$OUT/gpu-tests.log" | tail -40
fi

if [[ " $PHASES " == *" bench "* ]]; then
  stamp "servers"
  as_pg() { if [ -x /usr/sbin/runuser ] || command -v runuser >/dev/null; then "$(command -v runuser || echo /usr/sbin/runuser)" -u postgres -- "$@"; else su postgres -s /bin/bash -c "$*"; fi; }
  id postgres >/dev/null 2>&1 || useradd -M -d /tmp postgres || echo "postgres:x:7432:7432::/tmp:/bin/sh" >> /etc/passwd
  PGHOME=/tmp/pq/pg; mkdir -p /tmp/pq; chmod 755 /tmp/pq
  if [ ! -x /tmp/pq/pgserver/pgserver/pginstall/bin/postgres ]; then
    $PY -m zipfile -e .gpu/pgserver-*.whl /tmp/pq/pgserver
    chmod +x /tmp/pq/pgserver/pgserver/pginstall/bin/*
  fi
  PGBIN=/tmp/pq/pgserver/pgserver/pginstall/bin
  mkdir -p $PGHOME; chown postgres $PGHOME
  [ -d $PGHOME/data ] || as_pg $PGBIN/initdb -D $PGHOME/data -A trust -U postgres >/tmp/pq/initdb.log 2>&1 || tail -20 /tmp/pq/initdb.log
  as_pg $PGBIN/pg_ctl -D $PGHOME/data -l $PGHOME/pg.log -w \
    -o "-p $PGPORT -k $PGHOME -c listen_addresses=127.0.0.1" start \
    || { tail -20 $PGHOME/pg.log; }
  mkdir -p /tmp/pq/rabbit-prefix
  [ -d /tmp/pq/rabbit-prefix/rabbit ] || tar -xJf .gpu/rabbit.tar.xz -C /tmp/pq/rabbit-prefix
  bash tests/gpu/start-rabbit.sh /tmp/pq/rabbit-prefix /tmp/pq/rabbit $AMQPPORT 2>&1 | tail -15

  stamp "MiniLM (its architecture and tokenizer; weights drawn at random: same FLOPs)"
  $PY - <<'EOF'
import shutil, torch
from transformers import BertConfig, BertModel
shutil.copytree(".gpu/minilm", "/tmp/minilm", dirs_exist_ok=True)
torch.manual_seed(0)
BertModel(BertConfig.from_pretrained("/tmp/minilm")).save_pretrained("/tmp/minilm")
print("saved")
EOF

  stamp "bench"
  PIPEQ_BENCH_DEVICE=$DEVICE PIPEQ_BENCH_MINILM=/tmp/minilm PIPEQ_BENCH_ROUNDS=${ROUNDS:-2} PIPEQ_BENCH_PROCESSES=${PROCESSES:-4} \
  PIPEQ_BENCH_OUT="$OUT/bench.json" \
  PIPEQ_TEST_BROKER_URL=amqp://guest:guest@127.0.0.1:$AMQPPORT// \
  PIPEQ_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:$PGPORT/postgres \
    timeout ${BENCH_TIMEOUT:-330} $PY -m tests.bench --only batching 2>&1 | tee "$OUT/bench.log" | tail -80
fi
stamp "end"
