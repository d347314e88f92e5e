"""deploy/: every file parses, and everything it names exists in the code.

No container engine runs here, so the files are checked, not run: the pipeq commands
they start parse with the real CLI, their ``PIPEQ_`` variables are settings (and their
values valid ones), compose and Kubernetes serve the same queues, the RabbitMQ
definitions declare exactly what ``shared/queues.py`` declares, and the Kubernetes
manifests validate against the API schemas (kubernetes-validate ships them).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml

from shared.queues import (
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    EXCHANGE,
    WORK_QUEUES,
    dead_letter_queue,
    kombu_queues,
)
from shared.registry import load_registry
from shared.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILES = sorted((DEPLOY / "docker").glob("*.Dockerfile"))
PIPEQ_IMAGE = re.compile(r"^pipeq-(worker|slim)(:|$)")
# Queues that may scale to zero (the issue asks it of vision and audio).
SCALE_TO_ZERO = {"vision", "audio"}
PIP_WHEEL = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert docs, f"{path} holds no document"
    assert all(isinstance(doc, dict) for doc in docs), path
    return docs


def compose() -> dict[str, Any]:
    return yaml_docs(DEPLOY / "compose.yaml")[0]


def definitions() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
    return data


def k8s_docs() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.glob("*.yaml")) for doc in yaml_docs(path)]


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in k8s_docs() if doc["kind"] == kind]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per logical line, continuations joined."""
    logical, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, f"{path}: a continuation runs off the end"
    result = []
    for line in logical:
        word, _, rest = line.strip().partition(" ")
        result.append((word, rest.strip()))
    return result


# -- every command a deploy file starts ------------------------------------------------


def pipeq_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after ``pipeq``) for every pipeq process the deploy files start."""
    found: list[tuple[str, list[str]]] = []
    for name, service in compose()["services"].items():
        if PIPEQ_IMAGE.match(service.get("image", "")):
            found.append((f"compose {name}", [str(arg) for arg in service["command"]]))
    for doc in k8s_docs():
        if doc["kind"] in ("Deployment", "Job"):
            for container in containers(doc):
                if PIPEQ_IMAGE.match(container["image"]):
                    assert "command" not in container, "the image's entrypoint is pipeq"
                    found.append((f"k8s {doc['metadata']['name']}", container["args"]))
    for path in DOCKERFILES:
        steps = dict(dockerfile_instructions(path))
        assert json.loads(steps["ENTRYPOINT"]) == ["pipeq"], path
        found.append((path.name, json.loads(steps["CMD"])))
    return found


def parse_cli(argv: list[str]) -> click.Command:
    """Parse ``pipeq ARGV`` with the real CLI (options, choices, ranges), without running it."""
    from services.cli import cli

    command: click.Command = cli
    context = click.Context(cli, info_name="pipeq")
    args = list(argv)
    while isinstance(command, click.Group):
        assert args, f"pipeq {shlex.join(argv)}: no command"
        sub = command.get_command(context, args[0])
        assert sub is not None, f"pipeq {shlex.join(argv)}: no command {args[0]!r}"
        context = click.Context(sub, info_name=args[0], parent=context)
        command, args = sub, args[1:]
    with command.make_context(context.info_name, args, parent=context.parent):
        pass
    return command


def test_every_deploy_file_parses() -> None:
    yaml_files = [DEPLOY / "compose.yaml", *sorted(K8S.glob("*.yaml"))]
    for path in yaml_files:
        yaml_docs(path)
    assert definitions()["queues"]
    for line in (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[a-z_.]+ = \S+", line), line
    assert len(DOCKERFILES) == 2
    known = {"FROM", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "USER", "VOLUME", "EXPOSE"}
    known |= {"HEALTHCHECK", "ENTRYPOINT", "CMD", "LABEL"}
    for path in DOCKERFILES:
        for word, _ in dockerfile_instructions(path):
            assert word in known, f"{path.name}: {word}"
    assert load_registry(DEPLOY / "models.toml").specs


def test_every_command_parses_with_the_cli() -> None:
    commands = pipeq_commands()
    started = {argv[0] for _, argv in commands}
    assert {"worker", "gateway", "beat", "db"} <= started
    for where, argv in commands:
        try:
            parse_cli(argv)
        except (click.UsageError, click.BadParameter) as exc:
            pytest.fail(f"{where}: pipeq {shlex.join(argv)}: {exc}")


def test_the_cli_check_catches_a_bad_command() -> None:
    """The check above can fail: a typo, a queue that does not exist, a bad device value."""
    parse_cli(["worker", "--queue", "nlp", "--device", "cuda:0"])
    for argv in (
        ["wroker", "--queue", "nlp"],
        ["worker", "--queue", "nlq"],
        ["worker", "--queue", "nlp", "--concurrency", "0"],
        ["db", "upgrade", "--no-such-option"],
    ):
        with pytest.raises((click.UsageError, click.BadParameter, AssertionError)):
            parse_cli(argv)


# -- PIPEQ_ variables -------------------------------------------------------------------


def test_every_pipeq_variable_is_a_setting() -> None:
    settings = {f"PIPEQ_{name.upper()}" for name in Settings.model_fields}
    paths = [*DEPLOY.rglob("*.yaml"), *DOCKERFILES, DEPLOY / "rabbitmq" / "rabbitmq.conf"]
    used: dict[str, set[str]] = {}
    for path in paths:
        for variable in re.findall(r"\bPIPEQ_[A-Z0-9_]+\b", path.read_text()):
            used.setdefault(variable, set()).add(path.name)
    assert {"PIPEQ_BROKER_URL_FILE", "PIPEQ_METRICS_PORT", "PIPEQ_LOG_JSON"} <= set(used)
    unknown = {
        variable: sorted(where) for variable, where in used.items() if variable not in settings
    }
    assert not unknown, f"not settings (shared/settings.py): {unknown}"


def deploy_environments() -> list[tuple[str, dict[str, str]]]:
    envs = []
    for name, service in compose()["services"].items():
        env = service.get("environment") or {}
        envs.append((f"compose {name}", {k: str(v) for k, v in env.items()}))
    for doc in k8s_kind("ConfigMap"):
        if doc["metadata"]["name"] == "pipeq-env":
            envs.append(("k8s pipeq-env", dict(doc["data"])))
    for doc in k8s_docs():
        if doc["kind"] in ("Deployment", "Job"):
            for container in containers(doc):
                env = {item["name"]: str(item["value"]) for item in container.get("env", [])}
                envs.append((f"k8s {doc['metadata']['name']}", env))
    for path in DOCKERFILES:
        for word, rest in dockerfile_instructions(path):
            if word == "ENV":
                pairs = dict(part.split("=", 1) for part in shlex.split(rest))
                envs.append((path.name, pairs))
    return envs


def test_the_values_given_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each environment, read by the real Settings (the URL files are not on this machine)."""
    environments = deploy_environments()
    assert len(environments) > 10
    for where, env in environments:
        for key in [key for key in os.environ if key.startswith("PIPEQ_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            if key.startswith("PIPEQ_") and not key.endswith("_URL_FILE"):
                monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        try:
            settings = Settings()
        except Exception as exc:
            pytest.fail(f"{where}: {exc}")
        if "PIPEQ_METRICS_PORT" in env:
            assert settings.metrics_port == int(env["PIPEQ_METRICS_PORT"]), where
    get_settings.cache_clear()


# -- queues ---------------------------------------------------------------------------


def compose_workers() -> dict[str, dict[str, Any]]:
    """Compose worker services by the queue they serve."""
    workers: dict[str, dict[str, Any]] = {}
    for service in compose()["services"].values():
        command = [str(arg) for arg in service.get("command", [])]
        if command[:1] == ["worker"]:
            queue = option(command, "--queue")
            assert command.count("--queue") == 1, "one queue per worker: a GPU each"
            assert queue not in workers, f"two compose workers for {queue}"
            workers[queue] = service
    return workers


def k8s_workers() -> dict[str, dict[str, Any]]:
    workers: dict[str, dict[str, Any]] = {}
    for doc in k8s_kind("Deployment"):
        args = containers(doc)[0]["args"]
        if args[0] == "worker":
            assert args.count("--queue") == 1
            workers[option(args, "--queue")] = doc
    return workers


def test_compose_and_kubernetes_serve_every_queue_alike() -> None:
    assert set(compose_workers()) == set(WORK_QUEUES)
    assert set(k8s_workers()) == set(WORK_QUEUES)
    scaled = {doc["spec"]["scaleTargetRef"]["name"]: doc for doc in k8s_kind("ScaledObject")}
    vhost = {queue["vhost"] for queue in definitions()["queues"]}
    assert len(vhost) == 1
    for queue, deployment in k8s_workers().items():
        name = deployment["metadata"]["name"]
        assert name in scaled, f"no ScaledObject scales {name}"
        (trigger,) = scaled[name]["spec"]["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["queueName"] == queue
        assert trigger["metadata"]["vhostName"] in vhost
        assert trigger["metadata"]["mode"] == "QueueLength"
        assert int(trigger["metadata"]["value"]) >= 1
        minimum = scaled[name]["spec"]["minReplicaCount"]
        assert minimum == 0 if queue in SCALE_TO_ZERO else minimum >= 0, queue
        # the same worker options on both (concurrency, prefetch), device aside
        compose_args = [str(arg) for arg in compose_workers()[queue]["command"]]
        assert containers(deployment)[0]["args"] == compose_args, queue
    assert scaled[k8s_workers()["nlp"]["metadata"]["name"]]["spec"]["minReplicaCount"] >= 1


def test_each_worker_has_its_own_gpu() -> None:
    for queue, service in compose_workers().items():
        assert option([str(a) for a in service["command"]], "--device") == "cuda:0"
        (device,) = service["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        (device_id,) = device["device_ids"]
        assert re.fullmatch(r"\$\{GPU_[A-Z]+:-\d+\}", device_id), device_id
        assert service["healthcheck"]["test"], queue
    for queue, doc in k8s_workers().items():
        (container,) = containers(doc)
        assert option(container["args"], "--device") == "cuda:0"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1, queue
        assert doc["spec"]["template"]["spec"]["nodeSelector"], queue
        grace = doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > Settings().time_limit("", queue), f"{queue}: a warm shutdown is cut short"


# -- RabbitMQ definitions against shared/queues.py -------------------------------------


def test_rabbitmq_definitions_match_the_code() -> None:
    """Exactly what the code declares: a difference makes its declare fail (PRECONDITION_FAILED)."""
    data = definitions()
    queues = {queue["name"]: queue for queue in data["queues"]}
    exchanges = {exchange["name"]: exchange for exchange in data["exchanges"]}
    bindings = {(b["source"], b["destination"], b["routing_key"]) for b in data["bindings"]}
    declared = [*kombu_queues(WORK_QUEUES), dead_letter_queue()]
    assert set(queues) == {queue.name for queue in declared}
    assert set(exchanges) == {EXCHANGE, DEAD_LETTER_EXCHANGE}
    for queue in declared:
        defined = queues[queue.name]
        assert defined["arguments"] == queue.queue_arguments, queue.name
        assert defined["durable"] is queue.durable and defined["auto_delete"] is queue.auto_delete
        exchange = exchanges[queue.exchange.name]
        assert exchange["type"] == queue.exchange.type, exchange["name"]
        assert exchange["durable"] is queue.exchange.durable
        assert exchange["auto_delete"] is queue.exchange.auto_delete
        assert (queue.exchange.name, queue.name, queue.routing_key or "") in bindings
    assert len(bindings) == len(declared)
    assert queues[DEAD_LETTER_QUEUE]["arguments"] == {"x-queue-type": "quorum"}


def test_rabbitmq_policies() -> None:
    """One policy per queue (RabbitMQ applies one); train's consumer timeout outlasts its jobs."""
    policies = definitions()["policies"]
    for queue in WORK_QUEUES:
        matching = [p for p in policies if re.search(p["pattern"], queue)]
        assert len(matching) == 1, queue
        (policy,) = matching
        assert policy["definition"]["dead-letter-strategy"] == "at-least-once"
        # at-least-once dead-lettering needs reject-publish (else RabbitMQ drops to at-most-once)
        assert policy["definition"]["overflow"] == "reject-publish"
        for argument in kombu_queues((queue,))[0].queue_arguments or {}:
            assert argument.removeprefix("x-") not in policy["definition"], "set by the code"
    (train,) = [p for p in policies if re.search(p["pattern"], "train")]
    assert train["definition"]["consumer-timeout"] / 1000 > Settings().time_limit("", "train")
    conf = (DEPLOY / "rabbitmq" / "rabbitmq.conf").read_text()
    timeout = int(re.search(r"^consumer_timeout = (\d+)$", conf, re.M).group(1))  # type: ignore[union-attr]
    for queue in ("nlp", "vision", "audio"):
        assert timeout / 1000 > Settings().time_limit("", queue)


def test_credentials_agree() -> None:
    """The broker URL's user and password are the definitions' user; PostgreSQL's likewise."""
    broker = urlsplit((DEPLOY / "secrets" / "broker-url").read_text().strip())
    (user,) = definitions()["users"]
    assert broker.username == user["name"]
    assert broker.path.lstrip("/") == definitions()["vhosts"][0]["name"]
    raw = base64.b64decode(user["password_hash"])
    salt, digest = raw[:4], raw[4:]
    password = (broker.password or "").encode()
    assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert hashlib.sha256(salt + password).digest() == digest
    perms = definitions()["permissions"][0]
    assert (perms["user"], perms["vhost"]) == (user["name"], broker.path.lstrip("/"))
    flower = compose()["services"]["flower"]["environment"]["CELERY_BROKER_URL"]
    assert urlsplit(flower).netloc == broker.netloc and urlsplit(flower).path == broker.path

    database = urlsplit((DEPLOY / "secrets" / "database-url").read_text().strip())
    postgres = compose()["services"]["postgres"]["environment"]
    assert database.username == postgres["POSTGRES_USER"]
    assert database.path.lstrip("/") == postgres["POSTGRES_DB"]
    assert database.password == (DEPLOY / "secrets" / "postgres-password").read_text().strip()


# -- compose ----------------------------------------------------------------------------


def test_compose_services_health_and_order() -> None:
    services = compose()["services"]
    expected = {"rabbitmq", "postgres", "migrate", "gateway", "beat", "flower"}
    assert expected | {f"worker-{queue}" for queue in WORK_QUEUES} == set(services)
    for name in ("rabbitmq", "postgres", "gateway", *(f"worker-{q}" for q in WORK_QUEUES)):
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on {dependency}"
            wanted = (
                "service_completed_successfully" if dependency == "migrate" else "service_healthy"
            )
            assert condition["condition"] == wanted, (name, dependency)
    for name in ("gateway", "beat", *(f"worker-{q}" for q in WORK_QUEUES)):
        assert "migrate" in services[name]["depends_on"], name
    # the files compose mounts are in the repository
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
    for secret in compose()["secrets"].values():
        assert (DEPLOY / secret["file"]).is_file()


def test_workers_keep_models_and_the_hub_cache_on_volumes() -> None:
    volumes = compose()["volumes"]
    for queue, service in compose_workers().items():
        env = service["environment"]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        assert mounts[env["PIPEQ_MODEL_STORE"]] in volumes, queue
        assert mounts["/var/cache/huggingface"] in volumes, queue
        assert mounts[env["PIPEQ_MODELS"]] == "./models.toml"
    worker = dict(dockerfile_instructions(DEPLOY / "docker" / "worker.Dockerfile"))
    assert "HF_HOME=/var/cache/huggingface" in worker["ENV"]


# -- Dockerfiles ------------------------------------------------------------------------


def test_images() -> None:
    """The worker gets the CUDA build of the pinned torch; the slim image no torch at all."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    (torch_pin,) = [
        pin for pin in project["optional-dependencies"]["worker"] if pin.startswith("torch")
    ]
    worker = dockerfile_instructions(DEPLOY / "docker" / "worker.Dockerfile")
    slim = dockerfile_instructions(DEPLOY / "docker" / "slim.Dockerfile")
    runs = " ".join(rest for word, rest in worker if word == "RUN")
    assert f"pip install {torch_pin} --index-url" in runs
    assert "'.[worker]'" in runs
    slim_runs = " ".join(rest for word, rest in slim if word == "RUN")
    assert "torch" not in slim_runs and "worker" not in slim_runs
    assert "'.[gateway]'" in slim_runs
    for steps in (worker, slim):
        for word, rest in steps:
            if word == "COPY":
                *sources, _ = rest.split()
                for source in sources:
                    assert (REPO / source).exists(), source
    froms = [rest for word, rest in worker if word == "FROM"]
    args = dict(rest.split("=", 1) for word, rest in worker if word == "ARG" and "=" in rest)
    assert froms == ["${CUDA_IMAGE}"] and args["CUDA_IMAGE"].startswith("nvidia/cuda:")
    # a numeric user, so that Kubernetes can verify runAsNonRoot; the pods run as the same one
    for steps in (worker, slim):
        (user,) = [rest for word, rest in steps if word == "USER"]
        assert user == "10001"
    for doc in [*k8s_kind("Deployment"), *k8s_kind("Job")]:
        context = doc["spec"]["template"]["spec"]["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".git", ".pipeq"} <= set(ignored)


def test_an_installed_pipeq_carries_its_migrations(tmp_path: Path) -> None:
    """The images `pip install .` (not editable): the wheel must hold migrations/versions."""
    source = tmp_path / "src"  # a clean copy: no stale build/ folder to borrow files from
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for part in ("shared", "services", "migrations"):
        shutil.copytree(REPO / part, source / part, ignore=ignore)
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / part, source / part)
    subprocess.run(
        [*PIP_WHEEL, "-w", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("pipeq-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for migration in (REPO / "migrations" / "versions").glob("*.py"):
        assert f"migrations/versions/{migration.name}" in names
    assert "migrations/alembic.ini" in names


# -- Kubernetes -------------------------------------------------------------------------

CRDS = {"ScaledObject", "TriggerAuthentication", "Kustomization"}


def test_kubernetes_manifests_validate_against_the_api_schemas() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    checked = 0
    for doc in k8s_docs():
        if doc["kind"] not in CRDS:
            kubernetes_validate.validate(doc, "1.31", strict=True)
            checked += 1
    assert checked >= 10
    # ...and the validation bites: an unknown field and a wrong type are refused
    broken = copy.deepcopy(k8s_workers()["nlp"])
    broken["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.31", strict=True)
    broken = copy.deepcopy(k8s_workers()["nlp"])
    broken["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.31", strict=True)


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = yaml_docs(K8S / "kustomization.yaml")
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    images = {image["name"] for image in kustomization["images"]}
    used = {
        container["image"].split(":")[0]
        for doc in k8s_docs()
        if doc["kind"] in ("Deployment", "Job")
        for container in containers(doc)
    }
    assert used == images == {"pipeq-worker", "pipeq-slim"}


def test_kubernetes_references_resolve() -> None:
    """Every Secret, ConfigMap, claim and port a pod names is defined, with the keys it reads."""
    secrets = {d["metadata"]["name"]: set(d["stringData"]) for d in k8s_kind("Secret")}
    config_maps = {d["metadata"]["name"]: d["data"] for d in k8s_kind("ConfigMap")}
    claims = {d["metadata"]["name"] for d in k8s_kind("PersistentVolumeClaim")}
    env = config_maps["pipeq-env"]
    for doc in [*k8s_kind("Deployment"), *k8s_kind("Job")]:
        name = doc["metadata"]["name"]
        pod = doc["spec"]["template"]["spec"]
        if doc["kind"] == "Deployment":
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        for volume in volumes.values():
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, name
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, name
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, name
        for container in containers(doc):
            mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
            for source in container["envFrom"]:
                assert source["configMapRef"]["name"] in config_maps
            # the URL files the settings name are keys of the mounted Secret
            for key in ("PIPEQ_BROKER_URL_FILE", "PIPEQ_DATABASE_URL_FILE"):
                folder, _, file = env[key].rpartition("/")
                secret = mounts[folder]["secret"]["secretName"]
                assert file in secrets[secret], (name, key)
            if container["args"][0] != "db":
                folder, _, file = env["PIPEQ_MODELS"].rpartition("/")
                assert file in config_maps[mounts[folder]["configMap"]["name"]], name
            ports = {port["name"] for port in container.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe in container:
                    assert container[probe]["httpGet"]["port"] in ports, (name, probe)
    (auth,) = k8s_kind("TriggerAuthentication")
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["key"] in secrets[ref["name"]]
    for scaled in k8s_kind("ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
            assert trigger["metadata"]["protocol"] == "http", "counts unacked messages too"
    (service,) = k8s_kind("Service")
    (gateway,) = [d for d in k8s_kind("Deployment") if d["metadata"]["name"] == "pipeq-gateway"]
    gateway_ports = {p["name"]: p["containerPort"] for p in containers(gateway)[0]["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in gateway_ports
    assert (
        service["spec"]["selector"].items()
        <= gateway["spec"]["template"]["metadata"]["labels"].items()
    )
    port = int(option(containers(gateway)[0]["args"], "--port"))
    assert gateway_ports[service["spec"]["ports"][0]["targetPort"]] == port


def test_beat_runs_once_and_migrations_once() -> None:
    (beat,) = [d for d in k8s_kind("Deployment") if containers(d)[0]["args"] == ["beat"]]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    assert beat["metadata"]["name"] not in {
        d["spec"]["scaleTargetRef"]["name"] for d in k8s_kind("ScaledObject")
    }
    (job,) = k8s_kind("Job")
    assert containers(job)[0]["args"] == ["db", "upgrade"]


def test_the_registry_configmap_is_the_compose_registry() -> None:
    (config_map,) = [d for d in k8s_kind("ConfigMap") if d["metadata"]["name"] == "pipeq-models"]
    text = (DEPLOY / "models.toml").read_text()
    assert config_map["data"]["models.toml"] == text
    registry = load_registry(DEPLOY / "models.toml")
    served = {spec.queue for spec in registry.specs.values()}
    assert served <= set(WORK_QUEUES)
