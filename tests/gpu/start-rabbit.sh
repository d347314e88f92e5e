#!/usr/bin/env bash
# start-rabbit.sh PREFIX FOLDER PORT
#
# Starts a detached RabbitMQ 3.10.8 node from the relocatable bundle that was
# extracted under PREFIX (PREFIX/rabbit/{erlang,rabbitmq,lib}), with data, logs
# and the Erlang cookie in FOLDER (HOME=FOLDER), AMQP on 127.0.0.1:PORT, no
# plugins, guest/guest from loopback. Waits (up to RABBIT_WAIT_S, default 90 s)
# until the AMQP port accepts connections and prints the boot time; on failure
# exits nonzero and prints the tail of the node's log.
#
# Optional environment: ERL_EPMD_PORT (default 4369; epmd always binds to
# 127.0.0.1), RABBIT_DIST_PORT (default: a free loopback port),
# RABBIT_NODENAME (default: rmq<PORT>_<pid>@localhost), RABBIT_WAIT_S.
#
# Afterwards FOLDER/rabbit.env holds the environment (source it to use
# PREFIX/rabbit/rabbitmq/sbin/rabbitmqctl), FOLDER/rabbit.pid the beam.smp pid.
set -u

die() { echo "start-rabbit: $*" >&2; exit 1; }

[ $# -eq 3 ] || die "usage: $0 PREFIX FOLDER PORT"
PREFIX=$1 FOLDER=$2 PORT=$3
case "$PORT" in ''|*[!0-9]*) die "PORT must be a number: $PORT";; esac

R="$PREFIX/rabbit"
[ -d "$R" ] || die "no bundle at $R"
R=$(cd "$R" && pwd -P)
ERTS="$R/erlang/erts-13.1.5/bin"
[ -x "$ERTS/beam.smp" ] || die "no $ERTS/beam.smp"
[ -x "$R/rabbitmq/sbin/rabbitmq-server" ] || die "no $R/rabbitmq/sbin/rabbitmq-server"

mkdir -p "$FOLDER" || die "cannot create $FOLDER"
FOLDER=$(cd "$FOLDER" && pwd -P)
mkdir -p "$FOLDER/log" "$FOLDER/mnesia" "$FOLDER/conf.d"

port_open() { # port_open PORT -> 0 if something accepts on 127.0.0.1:PORT
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' && return
    fi
    local p i
    for i in $(seq 1 200); do
        p=$(( 30000 + RANDOM % 30000 ))
        port_open "$p" || { echo "$p"; return; }
    done
    return 1
}
now() { # seconds with fractions (bash 5 EPOCHREALTIME, else date)
    if [ -n "${EPOCHREALTIME:-}" ]; then echo "${EPOCHREALTIME/,/.}"; else date +%s.%N 2>/dev/null || date +%s; fi
}

port_open "$PORT" && die "port $PORT on 127.0.0.1 is already in use"

DIST_PORT=${RABBIT_DIST_PORT:-$(free_port)} || die "no free port for Erlang distribution"
NODE=${RABBIT_NODENAME:-rmq${PORT}_$$@localhost}
WAIT_S=${RABBIT_WAIT_S:-90}

# Config files, as tests/chaos/servers.py PrivateRabbit writes them.
printf 'listeners.tcp.local = 127.0.0.1:%s\nloopback_users.guest = true\n' "$PORT" > "$FOLDER/rabbitmq.conf"
echo '[].' > "$FOLDER/enabled_plugins"
: > "$FOLDER/env.conf"
# Resolve "localhost" without /etc/hosts or DNS if need be.
printf '{host, {127,0,0,1}, ["localhost"]}.\n{lookup, [file, native]}.\n' > "$FOLDER/erl_inetrc"

# Drop anything that could point the node at another Erlang/RabbitMQ install.
unset ERL_LIBS ERL_ROOTDIR ERL_AFLAGS ERL_FLAGS ERL_ZFLAGS BINDIR ROOTDIR EMU PROGNAME \
      RABBITMQ_HOME RABBITMQ_SCRIPTS_DIR RABBITMQ_ENV_LOADED RABBITMQ_PLUGINS_DIR RABBITMQ_LOGS
CLEAN_PATH=$(printf '%s' "${PATH:-/usr/bin:/bin}" | tr ':' '\n' | grep -v -e '^/usr/lib/erlang' -e '^/usr/lib/rabbitmq' | paste -sd: -)
[ -n "$CLEAN_PATH" ] || CLEAN_PATH=/usr/local/bin:/usr/bin:/bin

cat > "$FOLDER/rabbit.env" <<EOF
export PATH='$R/erlang/bin:$R/rabbitmq/sbin:$CLEAN_PATH'
export LD_LIBRARY_PATH='$R/lib'
export HOME='$FOLDER'
export RABBITMQ_CONF_ENV_FILE='$FOLDER/env.conf'
export RABBITMQ_NODENAME='$NODE'
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT='$PORT'
export RABBITMQ_DIST_PORT='$DIST_PORT'
export RABBITMQ_MNESIA_BASE='$FOLDER/mnesia'
export RABBITMQ_LOG_BASE='$FOLDER/log'
export RABBITMQ_CONFIG_FILE='$FOLDER/rabbitmq.conf'
export RABBITMQ_CONFIG_FILES='$FOLDER/conf.d'
export RABBITMQ_ADVANCED_CONFIG_FILE='$FOLDER/advanced.config'
export RABBITMQ_ENABLED_PLUGINS_FILE='$FOLDER/enabled_plugins'
export RABBITMQ_PID_FILE='$FOLDER/rabbit.pid'
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}'
export RABBITMQ_CTL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}'
export ERL_EPMD_ADDRESS=127.0.0.1
export ERL_EPMD_PORT='${ERL_EPMD_PORT:-4369}'
export ERL_INETRC='$FOLDER/erl_inetrc'
export ERL_CRASH_DUMP='$FOLDER/erl_crash.dump'
EOF

LOG="$FOLDER/log/${NODE}.log"
START_OUT="$FOLDER/log/start-rabbit.out"
rm -f "$FOLDER/rabbit.pid"

t0=$(now)
(
    cd "$FOLDER" || exit 1
    . "$FOLDER/rabbit.env"
    exec "$R/rabbitmq/sbin/rabbitmq-server" -detached
) > "$START_OUT" 2>&1 < /dev/null
rc=$?

beam_pid() { # our beam.smp: from the pid file, else the process whose environment has our node name
    local p e
    if [ -s "$FOLDER/rabbit.pid" ]; then p=$(cat "$FOLDER/rabbit.pid"); kill -0 "$p" 2>/dev/null && { echo "$p"; return; }; fi
    for e in /proc/[0-9]*/environ; do
        p=${e#/proc/}; p=${p%/environ}
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = beam.smp ] || continue
        if { tr '\0' '\n' < "$e"; } 2>/dev/null | grep -qx "RABBITMQ_NODENAME=$NODE"; then echo "$p"; return; fi
    done
}
fail() {
    echo "start-rabbit: $*" >&2
    echo "---- $START_OUT" >&2; tail -n 30 "$START_OUT" >&2 2>/dev/null
    for f in "$LOG" "$FOLDER"/log/*.log; do
        [ -f "$f" ] || continue
        echo "---- tail of $f" >&2; tail -n 60 "$f" >&2
        break
    done
    # do not leave a half-started node behind
    local pid; pid=$(beam_pid)
    if [ -n "$pid" ]; then
        echo "---- killing the node (beam.smp pid $pid)" >&2
        kill -9 "$pid" 2>/dev/null
    fi
    [ -f "$FOLDER/erl_crash.dump" ] && { echo "---- $FOLDER/erl_crash.dump" >&2; head -n 5 "$FOLDER/erl_crash.dump" >&2; }
    exit 1
}
[ $rc -eq 0 ] || fail "rabbitmq-server -detached exited with $rc"

deadline=$(( ${t0%.*} + WAIT_S )); n=0
while ! port_open "$PORT"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        fail "RabbitMQ did not open 127.0.0.1:$PORT within ${WAIT_S} s"
    fi
    # if the node died (or never started), stop waiting: check every ~2 s after the first 3 s
    n=$((n + 1))
    if [ $n -ge 15 ] && [ $((n % 10)) -eq 5 ] && [ -z "$(beam_pid)" ]; then
        sleep 1; port_open "$PORT" && break
        fail "no beam.smp of node $NODE is running: it died during boot"
    fi
    sleep 0.2
done
t1=$(now)
boot=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }' 2>/dev/null || echo "?")
PID=$(beam_pid); [ -n "$PID" ] || PID="?"
echo "RabbitMQ up in ${boot} s: node $NODE, amqp://guest:guest@127.0.0.1:$PORT/ , dist port $DIST_PORT, epmd 127.0.0.1:${ERL_EPMD_PORT:-4369}, beam.smp pid $PID"
echo "env for rabbitmqctl: . $FOLDER/rabbit.env; rabbitmqctl -n $NODE status"
