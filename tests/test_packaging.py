"""FlowForge as a user installs it: the wheel in a fresh virtualenv without extras, run from elsewhere.

`python -m build` makes the sdist and, from it, the wheel; a new virtualenv gets the wheel alone (no
`postgres`, `redis` or `test` extra). From a temporary working directory, with a temporary home,
`flowforge up --examples` must serve its page and static files, load the four example DAGs and run
`hello`, all from the installed package; the TUI must load its styles from it; PostgreSQL or Redis
without their extra must be one line naming the extra, exit 2. The floors of pyproject.toml must be
the ones ci/lowest-constraints.txt pins (.ci/run tests them), and the version must be the same
everywhere it is shown. Select these with `-m packaging`; they run in the normal suite too.
"""

from __future__ import annotations

import re
import subprocess
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import flowforge
from tests.harness import REPO, TERMINAL_RUN_STATES, FlowForgeProcess, free_port, wait_until
from tests.packaging_support import Installed, installed_wheel

EXAMPLE_DAGS = {"hello", "etl-pipeline", "flaky-retries", "timeout-demo"}
LOWEST = REPO / "ci" / "lowest-constraints.txt"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    return installed_wheel(tmp_path_factory)


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory outside the checkout, with no examples/ or flowforge/ in it."""
    return tmp_path_factory.mktemp("elsewhere")


@pytest.fixture(scope="module")
def up(
    installed: Installed, elsewhere: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FlowForgeProcess]:
    """The installed `flowforge up --examples`, started in `elsewhere` with a temporary home."""
    home = tmp_path_factory.mktemp("home")
    port = free_port()
    proc = FlowForgeProcess(
        ["up", "--examples", "--port", str(port), "--home", str(home), "--concurrency", "2"],
        name="up (installed wheel)",
        port=port,
        env=installed.env(),
        log_path=home.parent / f"{home.name}-up.log",
        repo=elsewhere,
        program=[str(installed.flowforge)],
    )
    try:
        yield proc.wait_healthy()
    finally:
        proc.stop()


def run_installed(
    installed: Installed, args: list[str], cwd: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=installed.env(**env), capture_output=True, text=True, timeout=120, check=False
    )


# -- what the distributions hold --------------------------------------------------------------------
@pytest.mark.packaging
@pytest.mark.timeout(900)
def test_wheel_carries_everything_up_reads_and_no_tests(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for needed in (
        "flowforge/api/static/index.html",
        "flowforge/api/static/app.js",
        "flowforge/tui/app.tcss",
    ):
        assert needed in names, f"the wheel lacks {needed}"
    examples = {n for n in names if n.startswith("flowforge/examples/") and n.endswith(".yaml")}
    assert len(examples) == len(EXAMPLE_DAGS), f"example DAGs in the wheel: {sorted(examples)}"
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))], (
        "tests or benchmarks in the wheel"
    )
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(installed.wheel).read(metadata).decode()
    assert {"postgres", "redis", "all", "test"} <= set(re.findall(r"^Provides-Extra: (\S+)", text, re.M))
    for driver in ("psycopg", "psycopg-pool", "redis"):
        lines = [line for line in text.splitlines() if re.match(rf"Requires-Dist: {driver}\b", line)]
        assert lines and all("extra ==" in line for line in lines), f"{driver} must come only with an extra"
    with tarfile.open(installed.sdist) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    for needed in ("pyproject.toml", "README.md", "flowforge/examples/hello.yaml", "flowforge/tui/app.tcss"):
        assert needed in members, f"the sdist lacks {needed}"


def test_version_is_written_once_and_shown_everywhere() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"], "the version lives in flowforge/__init__.py only"
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "flowforge.__version__"}
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert f"ARG VERSION={flowforge.__version__}\n" in dockerfile, "the image label's ARG VERSION"


@pytest.mark.packaging
@pytest.mark.timeout(900)
def test_installed_version_matches_the_package(
    installed: Installed, elsewhere: Path, up: FlowForgeProcess
) -> None:
    version = flowforge.__version__
    assert installed.wheel.name.startswith(f"flowforge-{version}-"), installed.wheel.name
    done = run_installed(installed, [str(installed.flowforge), "--version"], elsewhere)
    assert done.returncode == 0 and done.stdout.strip() == f"flowforge {version}", done
    status = httpx.get(f"{up.url}/api/v1/status", timeout=10).json()
    assert status["version"] == version
    assert httpx.get(f"{up.url}/openapi.json", timeout=10).json()["info"]["version"] == version


# -- the installed program, run from elsewhere ------------------------------------------------------
@pytest.mark.packaging
@pytest.mark.timeout(900)
def test_installed_package_is_the_one_that_runs(installed: Installed, elsewhere: Path) -> None:
    probe = "import flowforge, importlib.util as u; print(flowforge.__file__); print(u.find_spec('psycopg'), u.find_spec('redis'))"
    done = run_installed(installed, [str(installed.python), "-c", probe], elsewhere)
    assert done.returncode == 0, done.stderr
    location, drivers = done.stdout.splitlines()
    assert Path(location).is_relative_to(installed.venv), f"flowforge imported from {location}"
    assert drivers == "None None", "psycopg and redis come only with the postgres and redis extras"


@pytest.mark.packaging
@pytest.mark.timeout(900)
def test_up_serves_page_static_files_and_examples_from_the_package(up: FlowForgeProcess) -> None:
    assert httpx.get(f"{up.url}/health", timeout=10).status_code == 200
    page = httpx.get(f"{up.url}/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    scripts = re.findall(r'<script src="([^"]+\.js)"', page.text)
    assert scripts, "the page loads no script"
    for src in scripts:
        js = httpx.get(f"{up.url}{src}", timeout=10)
        assert js.status_code == 200 and "javascript" in js.headers["content-type"], src
        assert len(js.text) > 1000, f"{src} is suspiciously short"
    dags = httpx.get(f"{up.url}/api/v1/dags", timeout=10).json()["dags"]
    assert {d["id"] for d in dags} == EXAMPLE_DAGS


@pytest.mark.packaging
@pytest.mark.timeout(900)
def test_a_run_of_hello_succeeds(up: FlowForgeProcess) -> None:
    run = httpx.post(f"{up.url}/api/v1/runs", json={"dag_id": "hello"}, timeout=10)
    assert run.status_code in (200, 201), run.text
    run_id = run.json()["run_id"]

    def ended() -> dict[str, object] | None:
        detail: dict[str, object] = httpx.get(f"{up.url}/api/v1/runs/{run_id}", timeout=10).json()
        return detail if detail["state"] in TERMINAL_RUN_STATES else None

    detail = wait_until("the hello run to end", ended, 60, alive=up.check_alive, context=up.output)
    assert detail["state"] == "success", detail


@pytest.mark.packaging
@pytest.mark.timeout(900)
def test_tui_loads_its_styles_from_the_package(
    installed: Installed, elsewhere: Path, up: FlowForgeProcess
) -> None:
    # Textual reads CSS_PATH next to the module at start-up, and stops if the file is missing.
    script = f"""
import asyncio, inspect, pathlib
from flowforge.client import ApiClient
from flowforge.tui.app import FlowForgeApp

async def main():
    with ApiClient({up.url!r}, timeout=5) as client:
        app = FlowForgeApp(client)
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(200):
                if app.fetches:
                    break
                await pilot.pause(0.05)
            css = pathlib.Path(inspect.getfile(FlowForgeApp)).parent / FlowForgeApp.CSS_PATH
            print(css, app.fetches)

asyncio.run(main())
"""
    done = run_installed(installed, [str(installed.python), "-c", script], elsewhere)
    assert done.returncode == 0, done.stderr[-3000:]
    css, fetches = done.stdout.split()
    assert Path(css).is_relative_to(installed.venv) and Path(css).is_file(), css
    assert int(fetches) > 0, "the dashboard never drew the API's data"


@pytest.mark.packaging
@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    ("variable", "url", "extra"),
    [
        ("FLOWFORGE_DB", "postgresql://postgres@127.0.0.1:5432/postgres", "postgres"),
        ("FLOWFORGE_QUEUE", "redis://127.0.0.1:6379/0", "redis"),
    ],
)
def test_a_backend_without_its_extra_is_one_line_and_exit_2(
    installed: Installed, elsewhere: Path, tmp_path: Path, variable: str, url: str, extra: str
) -> None:
    args = [str(installed.flowforge), "up", "--port", str(free_port()), "--home", str(tmp_path / "home")]
    done = run_installed(installed, args, elsewhere, **{variable: url})
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{done.stderr}"
    assert variable in lines[0] and f"pip install 'flowforge[{extra}]'" in lines[0], lines[0]
    assert "Traceback" not in done.stderr


# -- the lowest versions ------------------------------------------------------------------------------
def floors_in_pyproject() -> dict[str, Version]:
    """Every `name>=X` of the dependencies and the extras (the project's own extras left out)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = [
        *project["dependencies"],
        *(s for group in project["optional-dependencies"].values() for s in group),
    ]
    floors: dict[str, Version] = {}
    for spec in specs:
        req = Requirement(spec)
        if canonicalize_name(req.name) == "flowforge":
            continue
        lows = [Version(s.version) for s in req.specifier if s.operator == ">="]
        assert len(lows) == 1, f"pyproject.toml: {spec!r} needs exactly one floor (>=), which .ci/run tests"
        floors[canonicalize_name(req.name)] = lows[0]
    return floors


def pins_in_constraints() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, raw in enumerate(LOWEST.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep, f"ci/lowest-constraints.txt:{number}: {raw!r} is not NAME==VERSION"
        pins[canonicalize_name(name.strip())] = Version(version.strip())
    return pins


def test_lowest_constraints_pin_every_floor_of_pyproject() -> None:
    floors, pins = floors_in_pyproject(), pins_in_constraints()
    assert floors.keys() - pins.keys() == set(), "floors with no pin in ci/lowest-constraints.txt"
    assert pins.keys() - floors.keys() == set(), "pins in ci/lowest-constraints.txt that no floor asks for"
    differ = {name: (str(floors[name]), str(pins[name])) for name in floors if floors[name] != pins[name]}
    assert not differ, f"pyproject.toml floor vs ci/lowest-constraints.txt pin: {differ}"


def test_ci_installs_the_lowest_versions_and_tests_them() -> None:
    script = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install" in script and "-c ci/lowest-constraints.txt" in script
    assert re.search(r"-c ci/lowest-constraints\.txt\s+-e\s+'\.\[test\]'", script), (
        "install the test extra on the floors"
    )
