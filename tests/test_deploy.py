"""The Dockerfile, docker-compose.yml and deploy/kubernetes/, checked by reading them.

No container engine or cluster runs here or in CI, so nothing of these is built or started. Instead
each file is parsed and held against what the code really accepts: the CLI's `--help` (subcommands,
flags, default ports and grace), the FLOWFORGE_* names the package's source reads, the routes a real
`flowforge up` serves (and which of them need the token), and the package version.
docs/DEPLOYMENT.md says what these tests cover and what they cannot.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

import flowforge

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "flowforge"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "docker-compose.yml"
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
KUSTOMIZATION = K8S / "kustomization.yaml"
# An example with placeholders, applied by nobody: kustomization.yaml must not list it.
SECRET_EXAMPLE = K8S / "secret.example.yaml"
PROMETHEUS = REPO / "examples" / "monitoring" / "prometheus.yml"

VERSION = flowforge.__version__
IMAGE = f"flowforge:{VERSION}"
ROLES = ("api", "scheduler", "worker")
REPLICAS = {"api": 2, "scheduler": 2, "worker": 3}  # Kubernetes
COMPOSE_REPLICAS = {"api": 1, "scheduler": 2, "worker": 3}
# A worker's shutdown after --grace: SIGTERM to SIGKILL of leftover tasks (5 s), then giving their
# attempts back and closing; the container runtime's SIGKILL must come later than all that.
SHUTDOWN_MARGIN_SECS = 10
ENV_NAME = re.compile(r"\bFLOWFORGE_[A-Z0-9_]*[A-Z0-9]\b")
COMPILERS = re.compile(r"\b(gcc|g\+\+|cc|clang|make|build-essential|python3?-dev|libpq-dev)\b")


# -- reading the files ----------------------------------------------------------------------------
def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blank lines skipped, no quoting used here)."""
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: {line!r} is not KEY=VALUE"
            pairs[key.strip()] = value.strip()
    return pairs


def deploy_files() -> list[Path]:
    """Every file that configures a deployment (image, compose, env examples, manifests), and its guide."""
    return [
        DOCKERFILE,
        COMPOSE,
        *sorted(DEPLOY.glob("*.example")),
        *sorted(K8S.glob("*.yaml")),
        REPO / "docs" / "DEPLOYMENT.md",
    ]


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str  # as written, ${ARG}s resolved
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"the {self.name or 'final'} stage has no {keyword}"
        return found[-1]


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comment lines (also inside a continuation) dropped."""
    instructions, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation line"
    return instructions


def arg_default(args: str) -> tuple[str, str | None]:
    name, sep, value = args.partition("=")
    return name.strip(), (value.strip().strip('"') if sep else None)


@functools.cache
def dockerfile_stages() -> tuple[dict[str, str], list[Stage]]:
    """The global ARG defaults (before the first FROM) and the stages in order."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for ins in dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8")):
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            assert ins.keyword == "ARG", f"only ARG may come before the first FROM, not {ins.keyword}"
            name, value = arg_default(ins.args)
            if value is not None:
                global_args[name] = value
        else:
            stages[-1].instructions.append(ins)
    return global_args, stages


def final_stage() -> Stage:
    return dockerfile_stages()[1][-1]


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not exec form: {args}"
    return value


def healthcheck_command(stage: Stage) -> list[str]:
    match = re.fullmatch(r"(?:--\S+\s+)*CMD\s+(\[.*\])", stage.last("HEALTHCHECK").args)
    assert match, "HEALTHCHECK must be `HEALTHCHECK [OPTIONS] CMD [...]` in exec form"
    return exec_form(match.group(1))


def dockerfile_user_id() -> int:
    user = final_stage().last("USER").args.split(":")[0]
    assert user.isdigit(), f"USER {user}: use a numeric UID, which Kubernetes' runAsNonRoot can verify"
    return int(user)


def compose() -> dict[str, Any]:
    data = read_yaml(COMPOSE)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def compose_services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def compose_flowforge_services() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose_services().items()
        if "build" in svc or str(svc.get("image", "")).startswith("flowforge")
    }


def env_files(service: dict[str, Any]) -> list[str]:
    value = service.get("env_file", [])
    items = [value] if isinstance(value, str | dict) else list(value)
    return [item if isinstance(item, str) else item["path"] for item in items]


def environment(service: dict[str, Any]) -> dict[str, str]:
    value = service.get("environment") or {}
    if isinstance(value, list):
        return dict(item.partition("=")[::2] for item in value)
    return {k: str(v) for k, v in value.items()}


@functools.cache
def manifests() -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every Kubernetes object in deploy/kubernetes (kustomization.yaml aside)."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path == KUSTOMIZATION:
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                found.append((path.name, doc))
    return found


def applied() -> list[dict[str, Any]]:
    """The objects `kubectl apply -k` creates (the Secret example is not one of them)."""
    return [doc for name, doc in manifests() if name != SECRET_EXAMPLE.name]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in applied() if doc["kind"] == kind]


@dataclass
class Workload:
    kind: str
    name: str
    doc: dict[str, Any]

    @property
    def pod(self) -> dict[str, Any]:
        return self.doc["spec"]["template"]["spec"]

    @property
    def labels(self) -> dict[str, str]:
        return self.doc["spec"]["template"]["metadata"]["labels"]

    @property
    def containers(self) -> list[dict[str, Any]]:
        return [*self.pod.get("initContainers", []), *self.pod["containers"]]

    @property
    def main(self) -> dict[str, Any]:
        assert len(self.pod["containers"]) == 1, f"{self.name}: one container expected"
        return self.pod["containers"][0]

    @property
    def is_flowforge(self) -> bool:
        return self.main["image"].split(":")[0].endswith("flowforge")

    @property
    def role(self) -> str | None:
        args = self.main.get("args") or []
        return args[0] if self.is_flowforge and "command" not in self.main and args else None


def workloads() -> list[Workload]:
    return [
        Workload(doc["kind"], doc["metadata"]["name"], doc)
        for doc in applied()
        if doc["kind"] in ("Deployment", "StatefulSet")
    ]


def workload(role: str) -> Workload:
    found = [w for w in workloads() if w.role == role]
    assert len(found) == 1, f"expected one workload running `flowforge {role}`, found {len(found)}"
    return found[0]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def container_ports(w: Workload) -> dict[str, int]:
    return {p.get("name", str(p["containerPort"])): p["containerPort"] for p in w.main.get("ports", [])}


def resolve_port(w: Workload, port: int | str) -> int:
    if isinstance(port, int):
        return port
    ports = container_ports(w)
    assert port in ports, f"{w.name}: no container port named {port!r} (has {sorted(ports)})"
    return ports[port]


QUANTITY = {
    "m": 1e-3,
    "": 1,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
}


def quantity(value: str | int | float) -> float:
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match and match.group(2) in QUANTITY, f"unreadable quantity {value!r}"
    return float(match.group(1)) * QUANTITY[match.group(2)]


def duration_secs(value: str) -> float:
    """A compose duration such as 45s, 1m30s or 500ms."""
    parts = re.findall(r"([0-9.]+)(ms|us|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"unreadable duration {value!r}"
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}
    return sum(float(n) * scale[u] for n, u in parts)


# -- what the code accepts ----------------------------------------------------------------------
def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWFORGE_")}
    env.update(COLUMNS="400", NO_COLOR="1", TERM="dumb")
    return env


@functools.cache
def cli_help(sub: str) -> str:
    """`python -m flowforge [SUB] --help`: the CLI's stable description of itself."""
    argv = [sys.executable, "-m", "flowforge", *([sub] if sub else []), "--help"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=cli_env(), timeout=60)
    assert proc.returncode == 0, f"`flowforge {sub} --help` failed: is {sub!r} a subcommand?\n{proc.stderr}"
    return proc.stdout


@functools.cache
def cli_options(sub: str) -> dict[str, str]:
    """Every flag of `flowforge SUB` (or of `flowforge` itself for ""), with its metavar and help text."""
    options: dict[str, str] = {}
    flags: list[str] = []  # those of the option whose help text a wrapped line continues
    for line in cli_help(sub).splitlines():
        if line.startswith("  -"):  # "  -c, --concurrency INTEGER  help", "  --insecure  help"
            term, _, text = line.strip().partition("  ")
            last = term.split()[-1]
            metavar = "" if last.startswith("-") else last
            kind = {"": "bool", "INTEGER": "int", "FLOAT": "float"}.get(metavar, metavar.lower())
            flags = re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*", term)
            for flag in flags:
                options[flag] = f"<{kind}> {text.strip()}"
        elif flags and line.startswith("    ") and line.strip():
            for flag in flags:
                options[flag] += " " + line.strip()
        else:
            flags = []
    assert "--help" in options, f"could not read the options of `flowforge {sub} --help`"
    return options


def cli_default(sub: str, flag: str) -> str:
    match = re.search(r"\(default: ([^)]+)\)", cli_options(sub)[flag])
    assert match, f"`flowforge {sub} --help` states no default for {flag}"
    return match.group(1)


def flag_value(argv: list[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag:
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def check_cli(argv: list[str], where: str) -> None:
    """`flowforge ARGV…` names a real subcommand, and each flag is one it accepts, with a value of its type."""
    assert argv, f"{where}: empty command"
    sub, rest = ("", argv) if argv[0].startswith("-") else (argv[0], argv[1:])
    options = cli_options(sub)
    usage = next(line for line in cli_help(sub).splitlines() if "Usage:" in line)
    takes_arguments = usage.split("[OPTIONS]", 1)[-1].strip() != ""
    i = 0
    while i < len(rest):
        arg = rest[i]
        i += 1
        if not arg.startswith("-"):
            assert takes_arguments, f"{where}: `flowforge {sub}` takes no argument such as {arg!r}"
            continue
        flag, has_value, inline = arg.partition("=")
        assert flag in options, f"{where}: `flowforge {sub}` has no flag {flag} (it has {sorted(options)})"
        metavar = options[flag].split(">")[0] + ">"
        if metavar == "<bool>":
            continue
        value = inline if has_value else (rest[i] if i < len(rest) else None)
        i += 0 if has_value else 1
        assert value is not None and not value.startswith("--"), f"{where}: {flag} needs a value"
        if metavar.startswith("<int"):
            assert re.fullmatch(r"-?\d+", value), f"{where}: {flag} takes a whole number, not {value!r}"
        elif metavar.startswith("<float"):
            assert re.fullmatch(r"-?\d+(\.\d*)?", value), f"{where}: {flag} takes a number, not {value!r}"


@functools.cache
def names_the_code_reads() -> frozenset[str]:
    """Every "FLOWFORGE_…" string literal of the package: settings, envvar= of flags, os.environ reads."""
    literal = re.compile(r"""["'](FLOWFORGE_[A-Z0-9_]+)["']""")
    names = {m for path in PACKAGE.rglob("*.py") for m in literal.findall(path.read_text(encoding="utf-8"))}
    # If this finds nothing the check below would pass whatever the files say.
    assert {"FLOWFORGE_DB", "FLOWFORGE_QUEUE", "FLOWFORGE_API_TOKEN"} <= names, sorted(names)
    return frozenset(names)


# -- commands, probes and Python snippets found in the files ------------------------------------
def flowforge_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `flowforge`) for every FlowForge process the files start."""
    found = [("Dockerfile CMD", exec_form(final_stage().last("CMD").args))]
    for name, svc in compose_flowforge_services().items():
        found.append((f"docker-compose.yml {name}", list(svc["command"])))
    for w in workloads():
        for c in w.containers:
            if not c["image"].split(":")[0].endswith("flowforge"):
                continue
            command = c.get("command")
            if command is None:
                found.append((f"{w.name}/{c['name']}", list(c.get("args", []))))
            elif command[0] == "flowforge":
                found.append((f"{w.name}/{c['name']}", [*command[1:], *c.get("args", [])]))
    return found


def python_snippets() -> list[tuple[str, str]]:
    """(where, code) for every `python -c CODE` in a healthcheck, probe or init container."""
    argvs: list[tuple[str, list[str]]] = [("Dockerfile HEALTHCHECK", healthcheck_command(final_stage()))]
    for name, svc in compose_services().items():
        test = (svc.get("healthcheck") or {}).get("test") or []
        if isinstance(test, list) and test[:1] == ["CMD"]:
            argvs.append((f"docker-compose.yml {name} healthcheck", test[1:]))
    for w in workloads():
        for c in w.containers:
            if "command" in c:
                argvs.append((f"{w.name}/{c['name']}", list(c["command"])))
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                if "exec" in c.get(probe, {}):
                    argvs.append((f"{w.name}/{c['name']} {probe}", list(c[probe]["exec"]["command"])))
    return [(where, argv[2]) for where, argv in argvs if argv[:2] == ["python", "-c"]]


@dataclass
class Probe:
    where: str
    port: int
    path: str
    sends_token: bool
    api_port: int | None  # the API port of the process probed, if it serves the API
    metrics_port: int | None


URL = re.compile(r"http://127\.0\.0\.1:(\d+)(/[\w./-]*)")


def probe_from_code(where: str, code: str, argv: list[str]) -> Probe:
    match = URL.search(code)
    assert match, f"{where}: no http://127.0.0.1:PORT/PATH in {code!r}"
    sends_token = "Authorization" in code and "FLOWFORGE_API_TOKEN" in code
    return Probe(where, int(match.group(1)), match.group(2), sends_token, *serving_ports(argv))


def serving_ports(argv: list[str]) -> tuple[int | None, int | None]:
    """The API port and the metrics port that `flowforge ARGV…` listens on."""
    sub = argv[0] if argv else ""
    api_port = None
    if sub in ("api", "up"):
        api_port = int(flag_value(argv, "--port") or cli_default(sub, "--port"))
    metrics = flag_value(argv, "--metrics-port")
    return api_port, int(metrics) if metrics else None


def probes() -> list[Probe]:
    # The image's own check is for `up` and `api` on the default port.
    found = [probe_from_code("Dockerfile HEALTHCHECK", healthcheck_command(final_stage())[2], ["up"])]
    for name, svc in compose_flowforge_services().items():
        test = svc["healthcheck"]["test"]
        found.append(probe_from_code(f"docker-compose.yml {name}", test[3], list(svc["command"])))
    for w in workloads():
        if not w.is_flowforge:
            continue
        argv = list(w.main.get("args", []))
        for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = w.main.get(kind)
            if probe is None:
                continue
            where = f"{w.name} {kind}"
            if "httpGet" in probe:
                http = probe["httpGet"]
                port = resolve_port(w, http["port"])
                found.append(Probe(where, port, http["path"], False, *serving_ports(argv)))
            else:
                command = probe["exec"]["command"]
                assert command[:2] == ["python", "-c"], f"{where}: expected a python -c probe"
                found.append(probe_from_code(where, command[2], argv))
    return found


# -- a real server to ask which routes exist -------------------------------------------------------
@dataclass
class Served:
    paths: set[str]
    status_without_token: dict[str, int]
    status_with_token: dict[str, int]


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`flowforge up` with a token: the OpenAPI paths, and how each probed path answers with and without it."""
    home = tmp_path_factory.mktemp("deploy-up")
    port, token = free_port(), "deploy-test-token"
    env = cli_env() | {"FLOWFORGE_API_TOKEN": token}
    argv = [sys.executable, "-m", "flowforge", "up", "--port", str(port), "--home", str(home), "-c", "1"]
    with open(home / "up.log", "wb") as log:
        proc = subprocess.Popen(argv, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    # Everything is asked at once and the server stopped before the tests read the answers.
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"flowforge up exited: {(home / 'up.log').read_text()}"
            try:
                if get(base + "/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "flowforge up did not answer /health within 60 s"
            time.sleep(0.2)
        status, body = get(base + "/openapi.json", token)
        assert status == 200, f"/openapi.json answered {status}"
        paths = set(json.loads(body)["paths"])
        wanted = {p.path for p in probes() if p.api_port is not None}
        without = {path: get(base + path)[0] for path in wanted}
        # /ready answers 503 until the scheduler thread has taken the leader lease.
        with_token: dict[str, int] = {}
        deadline = time.monotonic() + 30
        for path in wanted:
            while (code := get(base + path, token)[0]) == 503 and time.monotonic() < deadline:
                time.sleep(0.2)
            with_token[path] = code
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    yield Served(paths, without, with_token)


# == the image ====================================================================================
def test_base_images_are_pinned_to_a_python_the_package_supports() -> None:
    _, stages = dockerfile_stages()
    names = {s.name for s in stages if s.name}
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requires = project["requires-python"]
    floor = re.fullmatch(r">=\s*(\d+)\.(\d+)", requires)
    assert floor, f"requires-python {requires!r}: expected >=X.Y"
    minimum = (int(floor.group(1)), int(floor.group(2)))
    for stage in stages:
        if stage.base in names:
            continue
        image, _, tag = stage.base.partition(":")
        assert "$" not in stage.base, f"FROM {stage.base}: an ARG without a default"
        assert tag and tag != "latest", f"FROM {stage.base}: pin a version tag, never latest"
        version = re.match(r"(\d+)\.(\d+)\.(\d+)\b", tag)
        assert version, f"FROM {stage.base}: the tag must name a full version (such as 3.11.15-slim-bookworm)"
        assert image.endswith("python") and tuple(map(int, version.groups()[:2])) >= minimum, (
            f"FROM {stage.base}: pyproject.toml requires Python {requires}"
        )


def test_image_is_multi_stage_and_the_final_stage_builds_nothing() -> None:
    _, stages = dockerfile_stages()
    assert len(stages) >= 2, "a builder stage and a final stage"
    builders = {s.name for s in stages[:-1] if s.name}
    final = final_stage()
    assert any("pip wheel" in i.args for s in stages[:-1] for i in s.all("RUN")), "the builder builds wheels"
    gets_wheels = [
        i
        for i in final.instructions
        if any(f"from={b}" in i.args or f"--from={b}" in i.args for b in builders)
    ]
    assert gets_wheels, "the final stage takes what the builder made (COPY --from or RUN --mount from=)"
    for ins in final.all("RUN"):
        for install in re.findall(r"(?:apt-get|apt|apk)\s+(?:install|add)\s+([^&;|]*)", ins.args):
            assert not COMPILERS.search(install), f"the final stage installs build tools: {install}"
        if "pip install" in ins.args:
            assert "--no-index" in ins.args, "the final stage installs the builder's wheels only (--no-index)"
    # No source tree in the final image: nothing is copied from the context (the examples are in the wheel).
    copied = [shlex.split(i.args) for i in final.all("COPY") if "--from" not in i.args]
    assert not copied, copied


def test_image_runs_as_a_non_root_user() -> None:
    final = final_stage()
    assert final.instructions.index(final.last("USER")) > max(
        final.instructions.index(i) for i in final.all("RUN")
    ), "USER comes after every RUN of the final stage, so nothing after it runs as root"
    uid = dockerfile_user_id()
    assert uid != 0, "USER must not be root"


def test_entrypoint_healthcheck_and_version_label() -> None:
    final = final_stage()
    assert exec_form(final.last("ENTRYPOINT").args) == ["flowforge"]
    args = dict(arg_default(i.args) for i in final.all("ARG"))
    assert args.get("VERSION") == VERSION, f"ARG VERSION must default to flowforge.__version__ ({VERSION})"
    labels = dict(token.split("=", 1) for i in final.all("LABEL") for token in shlex.split(i.args))
    label = labels.get("org.opencontainers.image.version", "")
    assert label in ("${VERSION}", "$VERSION", VERSION), f"org.opencontainers.image.version is {label!r}"
    install = [i.args for i in final.all("RUN") if "pip install" in i.args]
    assert install and any(re.search(r"flowforge(\[[a-z,]+\])?==\$\{?VERSION\}?", a) for a in install), (
        "install flowforge==${VERSION}, so that the label cannot differ from what is installed"
    )
    command = healthcheck_command(final)
    assert command[:2] == ["python", "-c"] and "urllib" in command[2], "HEALTHCHECK with python's urllib"
    assert "curl" not in command and "wget" not in command


def test_examples_and_extras_come_with_the_package() -> None:
    # `flowforge up --examples` reads the example DAGs from the installed package, and the image
    # runs every role, so it installs the PostgreSQL and Redis extras.
    assert list((PACKAGE / "examples").glob("*.yaml")), "no example DAGs in the package"
    install = [i.args for i in final_stage().all("RUN") if "pip install" in i.args]
    assert any(re.search(r"flowforge\[all\]==", a) for a in install), "install flowforge[all] in the image"


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(regex)))
    return rules


def sent_to_builder(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for negate, regex in dockerignore_rules():
        if any(regex.fullmatch(p) for p in prefixes):
            excluded = not negate
    return not excluded


def test_dockerignore_sends_what_the_build_copies_and_no_secret() -> None:
    sources = [
        src
        for s in dockerfile_stages()[1]
        for i in s.all("COPY")
        if "--from" not in i.args
        for src in shlex.split(i.args)[:-1]
    ]
    for src in sources:
        path = REPO / src
        assert path.exists(), f"COPY {src}: no such file in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for f in files:
            rel = f.relative_to(REPO).as_posix()
            if "__pycache__" not in rel and not rel.endswith((".pyc", ".pyo")):
                assert sent_to_builder(rel), f".dockerignore leaves out {rel}, which COPY {src} needs"
    for rel in [
        "deploy/flowforge.env",
        "deploy/postgres.env",
        ".env",
        ".git/config",
        ".venv/bin/python",
        "tests/test_deploy.py",
        "flowforge/__pycache__/cli.cpython-311.pyc",
        "flowforge.egg-info/PKG-INFO",
        ".flowforge/flowforge.db",
    ]:
        assert not sent_to_builder(rel), f".dockerignore lets {rel} into the build context"


# == names, commands, ports and routes used across the files ==================================
def test_every_flowforge_variable_named_is_one_the_code_reads() -> None:
    known = names_the_code_reads()
    for path in deploy_files():
        unknown = set(ENV_NAME.findall(path.read_text(encoding="utf-8"))) - known
        assert not unknown, f"{path.relative_to(REPO)} names {sorted(unknown)}, which FlowForge never reads"


def test_every_command_uses_real_subcommands_and_flags() -> None:
    commands = flowforge_commands()
    assert {argv[0] for _, argv in commands if argv} >= set(ROLES)
    for where, argv in commands:
        check_cli(argv, where)


def test_every_python_snippet_compiles() -> None:
    snippets = python_snippets()
    assert len(snippets) >= 5
    for where, code in snippets:
        compile(code, where, "exec")


def test_probes_hit_routes_the_api_serves(served: Served) -> None:
    checked = 0
    for probe in probes():
        if probe.metrics_port is not None and probe.port == probe.metrics_port:
            # Prometheus' own server answers on any path; /metrics by convention.
            assert probe.path == "/metrics", f"{probe.where}: the metrics server serves /metrics"
            continue
        assert probe.port == probe.api_port, (
            f"{probe.where}: port {probe.port} is neither the API port ({probe.api_port}) nor the "
            f"metrics port ({probe.metrics_port}) of the process it checks"
        )
        assert probe.path in served.paths, f"{probe.where}: {probe.path} is not a route of the API"
        if probe.sends_token:
            assert served.status_with_token[probe.path] == 200, f"{probe.where}: {probe.path} with the token"
        else:
            status = served.status_without_token[probe.path]
            assert status == 200, (
                f"{probe.where}: {probe.path} answers {status} without a token, and this probe sends none "
                "(an httpGet probe cannot read a Secret: use an exec probe that sends FLOWFORGE_API_TOKEN)"
            )
        checked += 1
    assert checked >= 4


def test_ports_are_the_defaults_and_the_monitoring_example() -> None:
    api_default = int(cli_default("api", "--port"))
    assert api_default == 8080
    scrape = {job["job_name"]: job for job in read_yaml(PROMETHEUS)["scrape_configs"]}
    expected_metrics = {
        role: {
            urlsplit(f"//{t}").port
            for c in scrape[f"flowforge-{role}"]["static_configs"]
            for t in c["targets"]
        }
        for role in ("scheduler", "worker")
    }
    commands = [(where, argv) for where, argv in flowforge_commands() if argv and argv[0] in ROLES]
    for where, argv in commands:
        role = argv[0]
        if role == "api":
            assert int(flag_value(argv, "--port") or api_default) == api_default, where
            assert flag_value(argv, "--host") == "0.0.0.0", (
                f"{where}: in a container the API must bind 0.0.0.0"
            )
        metrics = flag_value(argv, "--metrics-port")
        if metrics is not None:
            assert {int(metrics)} == expected_metrics[role], (
                f"{where}: --metrics-port {metrics}, but examples/monitoring/prometheus.yml scrapes "
                f"{expected_metrics[role]}"
            )
            assert flag_value(argv, "--metrics-host") == "0.0.0.0", (
                f"{where}: metrics on 127.0.0.1 cannot be scraped from outside the container"
            )


# == docker-compose.yml ===========================================================================
def test_compose_uses_one_flowforge_image_and_pinned_backends() -> None:
    services = compose_services()
    flowforge_services = compose_flowforge_services()
    assert set(flowforge_services) == set(ROLES)
    for name, svc in flowforge_services.items():
        assert svc["image"] == IMAGE, f"{name}: image {svc['image']}, expected {IMAGE}"
        build = svc["build"] if isinstance(svc["build"], str) else svc["build"].get("context", ".")
        assert (REPO / build / "Dockerfile").resolve() == DOCKERFILE, f"{name} builds another Dockerfile"
    for name in ("postgres", "redis"):
        tag = services[name]["image"].partition(":")[2]
        assert tag and tag != "latest" and re.match(r"\d", tag), f"{name}: pin a version tag"
    k8s_images = {c["image"] for w in workloads() if not w.is_flowforge for c in w.containers}
    assert {services[n]["image"] for n in ("postgres", "redis")} == k8s_images, (
        "compose and Kubernetes should run the same PostgreSQL and Redis"
    )


def test_compose_roles_replicas_health_and_start_order() -> None:
    services = compose_services()
    assert services["postgres"]["healthcheck"]["test"] and services["redis"]["healthcheck"]["test"]
    volumes = services["postgres"].get("volumes", [])
    assert any(str(v).split(":")[0] in compose().get("volumes", {}) for v in volumes), (
        "postgres: a named volume"
    )
    assert any(str(v).split(":")[1] == "/var/lib/postgresql/data" for v in volumes)
    for name, svc in compose_flowforge_services().items():
        role = svc["command"][0]
        assert name == role
        replicas = (svc.get("deploy") or {}).get("replicas", 1)
        assert replicas == COMPOSE_REPLICAS[role], f"{name}: {replicas} replicas"
        test = svc["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], f"{name}: a python healthcheck"
        # API-mode workers need only the API; the others, the database and the queue.
        for needed in ("api",) if role == "worker" else ("postgres", "redis"):
            condition = (svc.get("depends_on") or {}).get(needed, {}).get("condition")
            assert condition == "service_healthy", f"{name} must wait for {needed} to be healthy"


def test_compose_secrets_come_from_env_files() -> None:
    services = compose_services()
    ignored = (DEPLOY / ".gitignore").read_text(encoding="utf-8").split()
    examples = {}
    for name, svc in services.items():
        for env_file in env_files(svc):
            example = REPO / f"{env_file}.example"
            assert example.is_file(), f"{name}: env_file {env_file} has no {example.name} to copy it from"
            assert "/" + Path(env_file).name in ignored, f"deploy/.gitignore must ignore {env_file}"
            assert not sent_to_builder(env_file), f"{env_file} would be sent to the image build"
            examples.setdefault(name, {}).update(read_env_file(example))
    secrets = {
        "FLOWFORGE_API_TOKEN",
        "FLOWFORGE_DB",
        "FLOWFORGE_API_READ_TOKEN",
        "FLOWFORGE_WORKER_TOKEN",
        "POSTGRES_PASSWORD",
    }
    for name, svc in services.items():
        inline = secrets & set(environment(svc))
        assert not inline, f"{name}: {sorted(inline)} belong in its env file, not in docker-compose.yml"
    assert "FLOWFORGE_API_TOKEN" in examples.get("api", {}), "the API's token comes from its env file"
    for role in ("api", "scheduler"):
        assert "FLOWFORGE_DB" in examples.get(role, {}), f"{role}: FLOWFORGE_DB comes from its env file"
    # API-mode workers: the worker token, which the API checks too, and no way into the database or queue.
    assert examples["worker"] == {"FLOWFORGE_WORKER_TOKEN": examples["api"]["FLOWFORGE_WORKER_TOKEN"]}
    assert not {"FLOWFORGE_DB", "FLOWFORGE_QUEUE"} & set(environment(services["worker"]))
    assert examples["worker"]["FLOWFORGE_WORKER_TOKEN"] != examples["api"]["FLOWFORGE_API_TOKEN"]
    for role in ROLES:
        # Workers run tasks: no variable outside FLOWFORGE_* (which tasks never see) holds a secret.
        assert "POSTGRES_PASSWORD" not in examples[role], f"{role} must not be given POSTGRES_PASSWORD"
    db = urlsplit(examples["api"]["FLOWFORGE_DB"])
    pg_env = environment(services["postgres"])
    assert (db.hostname, db.port or 5432) == ("postgres", 5432), "FLOWFORGE_DB points at the postgres service"
    assert db.username == pg_env["POSTGRES_USER"] and db.path == "/" + pg_env["POSTGRES_DB"]
    assert db.password == examples["postgres"]["POSTGRES_PASSWORD"], (
        "the example files should show the same database password in both places"
    )
    queue = urlsplit(environment(services["api"])["FLOWFORGE_QUEUE"])
    assert (queue.scheme, queue.hostname, queue.port) == ("redis", "redis", 6379)


def test_compose_gives_workers_time_to_finish_their_tasks() -> None:
    worker = compose_services()["worker"]
    grace = float(flag_value(worker["command"], "--grace") or cli_default("worker", "--grace"))
    stop = duration_secs(worker["stop_grace_period"])
    assert stop >= grace + SHUTDOWN_MARGIN_SECS, (
        f"stop_grace_period {worker['stop_grace_period']} leaves a worker with --grace {grace:g} too little time"
    )
    assert worker.get("init") is True, "a real init forwards SIGTERM and reaps what tasks leave behind"


# == Kubernetes ===================================================================================
def test_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = read_yaml(KUSTOMIZATION)
    files = {p.name for p in K8S.glob("*.yaml")} - {KUSTOMIZATION.name, SECRET_EXAMPLE.name}
    assert set(kustomization["resources"]) == files
    assert len(kustomization["resources"]) == len(files), "a file listed twice"
    assert SECRET_EXAMPLE.name not in kustomization["resources"], (
        "applying the example would put placeholders over the real Secret"
    )
    assert {i["name"]: i.get("newTag") for i in kustomization.get("images", [])} == {"flowforge": VERSION}


def test_every_object_is_in_the_flowforge_namespace() -> None:
    (namespace,) = of_kind("Namespace")
    name = namespace["metadata"]["name"]
    assert read_yaml(KUSTOMIZATION)["namespace"] == name
    assert namespace["metadata"]["labels"].get("pod-security.kubernetes.io/enforce") == "restricted"
    for file, doc in manifests():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == name, (
                f"{file}: {doc['kind']} {doc['metadata']['name']}"
            )


def test_one_flowforge_image_and_pinned_backends() -> None:
    for w in workloads():
        for c in w.containers:
            image = c["image"]
            if image.split(":")[0].endswith("flowforge"):
                assert image == IMAGE, f"{w.name}/{c['name']}: {image}, expected {IMAGE}"
            else:
                tag = image.partition(":")[2]
                assert tag and tag != "latest", f"{w.name}/{c['name']}: pin {image} to a version"
    assert {w.role for w in workloads()} >= set(ROLES)


def test_every_container_has_resource_requests_and_limits() -> None:
    for w in workloads():
        for c in w.containers:
            resources = c.get("resources", {})
            for resource in ("cpu", "memory"):
                request = resources.get("requests", {}).get(resource)
                limit = resources.get("limits", {}).get(resource)
                assert request is not None and limit is not None, f"{w.name}/{c['name']}: {resource}"
                assert quantity(request) <= quantity(limit), (
                    f"{w.name}/{c['name']}: {resource} request > limit"
                )


def test_replicas_probes_and_worker_shutdown() -> None:
    for role, replicas in REPLICAS.items():
        actual = workload(role).doc["spec"]["replicas"]
        assert actual == replicas, f"{role}: {actual} replicas, expected {replicas}"
    api = workload("api").main
    paths = {}
    for kind in ("readinessProbe", "livenessProbe"):
        probe = api.get(kind)
        assert probe, f"the API needs a {kind}"
        if "httpGet" in probe:
            paths[kind] = probe["httpGet"]["path"]
        else:
            match = URL.search(probe["exec"]["command"][2])
            assert match, f"the API's {kind} calls no http://127.0.0.1:PORT/PATH"
            paths[kind] = match.group(2)
    assert paths == {"readinessProbe": "/ready", "livenessProbe": "/health"}
    worker = workload("worker")
    grace = float(flag_value(worker.main["args"], "--grace") or cli_default("worker", "--grace"))
    termination = worker.pod.get("terminationGracePeriodSeconds", 30)
    assert termination >= grace + SHUTDOWN_MARGIN_SECS, (
        f"terminationGracePeriodSeconds {termination} leaves a worker with --grace {grace:g} too little time"
    )


def test_the_disruption_budget_covers_the_workers_only() -> None:
    worker = workload("worker")
    budgets = [
        pdb
        for pdb in of_kind("PodDisruptionBudget")
        if selects(pdb["spec"]["selector"]["matchLabels"], worker.labels)
    ]
    assert len(budgets) == 1, "one PodDisruptionBudget selects the worker pods"
    selector = budgets[0]["spec"]["selector"]["matchLabels"]
    others = [w.name for w in workloads() if w.name != worker.name and selects(selector, w.labels)]
    assert not others, f"the workers' PodDisruptionBudget also selects {others}"


def test_services_select_pods_and_their_ports() -> None:
    services = {s["metadata"]["name"]: s for s in of_kind("Service")}
    for name, service in services.items():
        selector = service["spec"]["selector"]
        matched = [w for w in workloads() if selects(selector, w.labels)]
        assert len(matched) == 1, f"Service {name} selects {[w.name for w in matched]}"
        for port in service["spec"]["ports"]:
            resolve_port(matched[0], port.get("targetPort", port["port"]))
    for w in workloads():
        if w.kind == "StatefulSet":
            governing = services.get(w.doc["spec"]["serviceName"])
            assert governing and governing["spec"].get("clusterIP") == "None", f"{w.name}: a headless Service"
            claims = {t["metadata"]["name"] for t in w.doc["spec"]["volumeClaimTemplates"]}
            mounts = {m["name"]: m["mountPath"] for m in w.main.get("volumeMounts", [])}
            assert claims and claims <= set(mounts), f"{w.name}: every volumeClaimTemplate is mounted"
    api_port = int(flag_value(workload("api").main["args"], "--port") or cli_default("api", "--port"))
    assert (
        resolve_port(workload("api"), services["flowforge-api"]["spec"]["ports"][0]["targetPort"]) == api_port
    )
    for role in ("scheduler", "worker"):
        w = workload(role)
        assert container_ports(w).get("metrics") == int(flag_value(w.main["args"], "--metrics-port") or 0), (
            role
        )


def test_network_policies_expose_only_the_api() -> None:
    policies = of_kind("NetworkPolicy")
    everything = workloads()
    default_deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and "Ingress" in p["spec"]["policyTypes"]
        and not p["spec"].get("ingress")
    ]
    assert default_deny, "a default-deny ingress policy for the namespace"
    flowforge_pods = [w for w in everything if w.is_flowforge]
    for policy in policies:
        selected = [
            w for w in everything if selects(policy["spec"]["podSelector"].get("matchLabels", {}), w.labels)
        ]
        for rule in policy["spec"].get("ingress", []):
            sources = rule.get("from")
            opens_outside = not sources or any("namespaceSelector" in s or "ipBlock" in s for s in sources)
            if opens_outside:
                assert [w.role for w in selected] == ["api"], (
                    f"NetworkPolicy {policy['metadata']['name']} lets other namespaces reach {[w.name for w in selected]}"
                )
            else:
                for source in sources:
                    allowed = [
                        w for w in everything if selects(source["podSelector"]["matchLabels"], w.labels)
                    ]
                    assert allowed and all(w.is_flowforge for w in allowed), (
                        f"NetworkPolicy {policy['metadata']['name']} lets in {[w.name for w in allowed]}"
                    )
            for w in selected:
                for port in rule.get("ports", []):
                    resolve_port(w, port["port"])
    for backend in ("postgres", "redis"):
        w = next(w for w in everything if w.name == backend)
        allowing = [
            p
            for p in policies
            if p["spec"].get("ingress") and selects(p["spec"]["podSelector"].get("matchLabels", {}), w.labels)
        ]
        assert allowing, f"no policy lets FlowForge reach {backend}"
        for p in allowing:
            for rule in p["spec"]["ingress"]:
                reached_by = [
                    f
                    for f in flowforge_pods
                    for s in rule["from"]
                    if selects(s["podSelector"]["matchLabels"], f.labels)
                ]
                # API-mode workers hold no credentials of the database or the queue, and cannot reach them.
                assert {f.role for f in reached_by} == {"api", "scheduler"}, f"{backend}: {reached_by}"


def test_pods_run_as_non_root_on_a_read_only_root_filesystem() -> None:
    uid = dockerfile_user_id()
    for w in workloads():
        pod_context = w.pod.get("securityContext", {})
        assert pod_context.get("runAsNonRoot") is True, w.name
        assert pod_context.get("runAsUser", 0) != 0, w.name
        assert pod_context.get("seccompProfile", {}).get("type") == "RuntimeDefault", w.name
        if w.is_flowforge:
            assert pod_context["runAsUser"] == uid, f"{w.name}: runAsUser is not the image's USER {uid}"
        volumes = {v["name"]: v for v in w.pod.get("volumes", [])}
        for c in w.containers:
            context = c.get("securityContext", {})
            where = f"{w.name}/{c['name']}"
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            if w.is_flowforge and c in w.pod["containers"]:
                assert "emptyDir" in volumes[mounts["/tmp"]], f"{where}: a writable /tmp"
        if w.role == "worker":
            workdir = w.main.get("workingDir", final_stage().last("WORKDIR").args)
            mounts = {m["mountPath"]: m["name"] for m in w.main["volumeMounts"]}
            assert workdir in mounts and "emptyDir" in volumes[mounts[workdir]], (
                "tasks need a writable workdir"
            )
        assert w.pod.get("automountServiceAccountToken") is False, f"{w.name} has no use for the API server"


def test_secrets_and_settings_are_referenced_consistently() -> None:
    (secret,) = [doc for name, doc in manifests() if name == SECRET_EXAMPLE.name]
    secret_name, keys = secret["metadata"]["name"], set(secret["stringData"])
    configmaps = {c["metadata"]["name"]: c["data"] for c in of_kind("ConfigMap")}
    for w in workloads():
        for c in w.containers:
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert (ref["name"], ref["key"]) in {(secret_name, k) for k in keys}, f"{w.name}: {ref}"
            for source in c.get("envFrom", []):
                assert source["configMapRef"]["name"] in configmaps, w.name
    api_env = {e["name"] for e in workload("api").main["env"]}
    assert {"FLOWFORGE_API_TOKEN", "FLOWFORGE_WORKER_TOKEN"} <= api_env
    for role in ("scheduler", "worker"):
        env = {e["name"] for e in workload(role).main["env"]}
        assert "FLOWFORGE_API_TOKEN" not in env, f"the {role} has no use for the API token"
    # API-mode workers: the worker token, the API's URL, and nothing of the database or the queue.
    worker = workload("worker")
    for c in worker.containers:
        env = {e["name"] for e in c.get("env", [])}
        assert not {"FLOWFORGE_DB", "FLOWFORGE_QUEUE"} & env and not c.get("envFrom"), (
            f"{worker.name}/{c['name']}"
        )
    assert "FLOWFORGE_WORKER_TOKEN" in {e["name"] for e in worker.main["env"]}
    services = {s["metadata"]["name"]: s["spec"]["ports"][0]["port"] for s in of_kind("Service")}
    db = urlsplit(secret["stringData"]["database-url"])
    assert services.get(db.hostname) == (db.port or 5432), f"database-url: no Service {db.hostname}:{db.port}"
    assert db.password == secret["stringData"]["postgres-password"]
    (settings,) = configmaps.values()
    queue = urlsplit(settings["FLOWFORGE_QUEUE"])
    assert services.get(queue.hostname) == (queue.port or 6379), (
        f"FLOWFORGE_QUEUE: no Service {queue.hostname}"
    )
    init_scripts = {c["command"][2] for w in workloads() for c in w.pod.get("initContainers", [])}
    assert len(init_scripts) <= 1, "the FlowForge pods should wait for their backends the same way"


def test_manifests_match_the_kubernetes_schemas() -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate is not installed: pip install kubernetes-validate to check the "
        "manifests against Kubernetes' own schemas (offline)",
    )
    # The oldest Kubernetes these manifests aim at, and the newest the package knows.
    errors = []
    for version in ("1.29.0", kubernetes_validate.latest_version()):
        for file, doc in manifests():
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                at = "/".join(str(p) for p in exc.path)
                errors.append(
                    f"{file}: {doc['kind']} {doc['metadata']['name']} at {at}: {exc.message} ({version})"
                )
    assert not errors, "\n".join(errors)


def test_workers_point_at_the_api_they_can_reach() -> None:
    """Compose and Kubernetes workers run with --api-url naming the API's service and port."""
    compose_worker = compose_services()["worker"]["command"]
    api_port = int(flag_value(compose_services()["api"]["command"], "--port") or cli_default("api", "--port"))
    url = urlsplit(flag_value(compose_worker, "--api-url") or "")
    assert (url.scheme, url.hostname, url.port) == ("http", "api", api_port), compose_worker
    services = {s["metadata"]["name"]: s for s in of_kind("Service")}
    url = urlsplit(flag_value(workload("worker").main["args"], "--api-url") or "")
    assert url.hostname in services, f"--api-url {url.geturl()}: no Service {url.hostname}"
    service = services[url.hostname]
    assert selects(service["spec"]["selector"], workload("api").labels)
    assert url.port in {p["port"] for p in service["spec"]["ports"]}
    waits = [
        e["value"]
        for c in workload("worker").pod.get("initContainers", [])
        for e in c.get("env", [])
        if e["name"] == "FLOWFORGE_API_URL"
    ]
    assert waits == [url.geturl()], "the worker's init container waits for the API it will call"
