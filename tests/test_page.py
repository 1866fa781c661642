"""The web page in a real browser (Debian's chromium through Playwright) against a real `flowforge up`.

Skipped without /usr/bin/chromium or the playwright package; `.ci/run` installs both. The tests
save screenshots of the DAG list, a DAG's graph and grid, and a run to `screenshots/`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # a plain `pip install -e .` has no playwright
    sync_playwright = None

from flowforge.core.model import RunState
from flowforge.store import Store, open_store
from tests.cluster import Cluster
from tests.durations_support import ended_run, parallel_dag, running_run
from tests.harness import REPO

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "screenshots"
GREEN = "rgb(26, 127, 55)"  # --c-success in app.css

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        sync_playwright is None, reason="playwright is not installed (pip install -e '.[test]')"
    ),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)"),
]

# Two extracts, a transform that fails its first attempt, a slow load, a report, and a failure
# handler that is skipped when nothing failed: most task states show up in one run.
ETL = """\
id: page-etl
name: Nightly ETL
description: Extract users and orders, transform, load, report
retry_delay_secs: 0.5
tasks:
  - id: extract-users
    command: echo extracting users && sleep 1
  - id: extract-orders
    command: echo extracting orders && sleep 2
  - id: transform
    command: 'echo "transform, attempt $FLOWFORGE_ATTEMPT"; sleep 1; test "$FLOWFORGE_ATTEMPT" -gt 1'
    depends_on: [extract-users, extract-orders]
    retries: 2
  - id: load
    command: for i in 1 2 3; do echo line-$i; sleep 1; done
    depends_on: [transform]
  - id: report
    command: echo report sent
    depends_on: [load]
  - id: on-failure
    command: echo something failed
    depends_on: [load]
    trigger_rule: one_failed
"""
FINAL_STATES = {
    "extract-users": "success",
    "extract-orders": "success",
    "transform": "success",
    "load": "success",
    "report": "success",
    "on-failure": "skipped",
}

SLEEPER = """\
id: page-sleeper
tasks:
  - {id: nap, command: echo napping && sleep 30}
"""

# Markup in every string a user controls: the DAG's name and description, a task's name, its output.
XSS_PAYLOAD = "<script>window.pwned=1</script><img src=x onerror=window.pwned=1>"
XSS = """\
id: page-xss
name: "<img src=x onerror=window.pwned=1> name"
description: "<b>bold?</b><script>window.pwned=1</script><img src=x onerror=window.pwned=1>"
tasks:
  - id: shout
    name: "<script>window.pwned=1</script>"
    command: |
      printf '%s\\n' '<script>window.pwned=1</script><img src=x onerror=window.pwned=1>'
"""


@contextmanager
def running_server(folder: Path, env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """A real `flowforge up --concurrency 2` on a free port, its data and log in `folder`."""
    server = Cluster(folder, env=env)
    try:
        server.start_up(2)
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_server(tmp_path_factory.mktemp("page")) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser, server: Cluster) -> Iterator[Page]:
    """A fresh tab on the server; fails the test on a script error or a CSP violation."""
    with watched_tab(browser, server.url) as tab:
        yield tab


@contextmanager
def watched_tab(browser: Browser, url: str) -> Iterator[Page]:
    """A fresh tab on the API at `url`; fails on a script error or a CSP violation."""
    context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    tab.on(
        "console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None
    )
    tab.on("dialog", lambda dialog: dialog.accept())  # the cancel button asks to confirm
    try:
        yield tab
    finally:
        context.close()
    assert not problems, problems


def screenshot(tab: Page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def mark_document(tab: Page) -> None:
    """Set a marker that only survives as long as the document does: a reload would drop it."""
    tab.evaluate("window.pageMarker = 'still the same document'")


def assert_same_document(tab: Page) -> None:
    assert tab.evaluate("window.pageMarker") == "still the same document", "the page reloaded"


def test_page_has_a_strict_content_security_policy(server: Cluster) -> None:
    resp = httpx.get(server.url + "/")
    assert resp.status_code == 200
    csp = resp.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    for asset in ("app.js", "draw.js", "app.css"):
        assert httpx.get(f"{server.url}/static/{asset}").status_code == 200


def test_list_trigger_and_grid_turn_green_without_reloading(page: Page, server: Cluster) -> None:
    server.submit(ETL)
    page.goto("/")
    mark_document(page)
    row = page.locator("tr[data-dag='page-etl']")
    expect(row).to_contain_text("Nightly ETL")
    expect(row).to_contain_text("Extract users and orders")
    expect(page.locator("#st-workers")).to_contain_text("alive")
    expect(page.locator("#st-live")).to_have_text("live (events)")

    row.get_by_role("button", name="Trigger").click()
    expect(page.locator("#message")).to_contain_text("Triggered page-etl")
    square = row.locator(".squares .sq")
    expect(square).to_have_count(1)
    expect(square).to_have_attribute("data-state", "running", timeout=10_000)
    expect(square).to_have_attribute("data-state", "success", timeout=40_000)
    expect(square).to_have_attribute("title", re.compile(r": success$"))
    expect(square.locator(".sr-only")).to_have_text(re.compile(r": success$"))
    assert square.evaluate("e => getComputedStyle(e).backgroundColor") == GREEN
    assert_same_document(page)

    # The DAG's page: its graph, the grid, its source; reached without a reload.
    row.locator("a.dag-id").click()
    expect(page).to_have_url(re.compile(r"#/dags/page-etl$"))
    expect(page.locator("svg.graph g.node")).to_have_count(6)
    expect(page.locator("svg.graph path.edge")).to_have_count(5)
    expect(page.locator("pre.source")).to_contain_text("trigger_rule: one_failed")
    cells = page.locator(".grid a.cell")
    expect(cells).to_have_count(6)

    # A second run from this page's button: a new column appears and its cells turn green live.
    page.locator(".title-row").get_by_role("button", name="Trigger").click()
    expect(cells).to_have_count(12)
    expect(page.locator(".grid a.cell[data-state='running']").first).to_be_visible(timeout=10_000)
    for task, state in FINAL_STATES.items():
        for cell in page.locator(f".grid a.cell[href$='/{task}']").all():
            expect(cell).to_have_attribute("data-state", state, timeout=40_000)
            expect(cell).to_have_attribute("aria-label", re.compile(f"{state}$"))
    assert (
        page.locator(".grid a.cell[href$='/load']").last.evaluate("e => getComputedStyle(e).backgroundColor")
        == GREEN
    )
    expect(page.locator("svg.graph g.node[data-task='report']")).to_have_attribute("data-state", "success")
    expect(page.locator("svg.graph g.node[data-task='report'] .node-state")).to_have_text("success")
    assert_same_document(page)
    page.mouse.move(0, 0)
    screenshot(page, "dag-view.png")


def test_run_view_follows_a_log_live_and_shows_attempts(page: Page, server: Cluster) -> None:
    # Without the event stream (an older or proxied server), polling alone keeps the page live.
    page.route("**/api/v1/events*", lambda route: route.fulfill(status=404, json={"error": {}}))
    server.submit(ETL)
    run_id = server.trigger("page-etl")
    page.goto(f"/#/runs/{run_id}")
    mark_document(page)
    expect(page.locator("#st-live")).to_have_text("live (polling every 1 s)")
    expect(page.locator("svg.graph g.node")).to_have_count(6)
    page.locator("svg.graph g.node[data-task='load']").click()
    expect(page).to_have_url(re.compile(rf"#/runs/{run_id}/load$"))
    log = page.locator("pre.log")
    # Seen while the task still runs: the page follows the log through the API's cursor.
    expect(log).to_contain_text("line-1", timeout=30_000)
    expect(page.locator("#task-state")).to_have_text("running")
    expect(page.locator(".log-note")).to_contain_text("following live")
    expect(log).to_contain_text("line-3", timeout=20_000)
    expect(page.locator("#task-state")).to_have_text("success", timeout=20_000)
    assert log.text_content() == "line-1\nline-2\nline-3\n"  # each chunk once, in order
    expect(page.locator("#run-state")).to_have_text("success", timeout=20_000)
    expect(page.locator("svg.gantt .gantt-row")).to_have_count(6)
    expect(page.locator("svg.gantt .gantt-row[data-task='load']")).to_contain_text("success")
    expect(page.locator("svg.gantt .gantt-row[data-task='on-failure']")).to_contain_text("skipped")

    # The flaky transform: both attempts listed, and each attempt's own log.
    page.locator("svg.gantt .gantt-row[data-task='transform']").click()
    rows = page.locator(".attempts tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("success")
    expect(rows.nth(1)).to_contain_text("failed")
    expect(log).to_have_text("transform, attempt 2\n")
    rows.nth(1).get_by_role("button", name="Show").click()
    expect(log).to_have_text("transform, attempt 1\n")
    expect(page.locator("svg.graph g.node[data-task='transform']")).to_have_class(re.compile("selected"))
    assert_same_document(page)
    page.mouse.move(0, 0)
    screenshot(page, "run-view.png")


def test_retry_a_failed_task_from_its_page(page: Page, server: Cluster, tmp_path: Path) -> None:
    marker = tmp_path / "second-time"
    server.submit(f"""\
id: page-retry
tasks:
  - id: picky
    command: 'if [ -e {marker} ]; then echo fine now; else touch {marker}; echo not yet; exit 3; fi'
  - id: after
    command: echo after
    depends_on: [picky]
""")
    run_id = server.trigger("page-retry")
    assert server.wait_run(run_id)["state"] == "failed"
    page.goto(f"/#/runs/{run_id}/picky")
    expect(page.locator("#task-state")).to_have_text("failed")
    expect(page.locator(".attempts tbody tr")).to_contain_text("3")  # the exit code
    expect(page.locator("svg.graph g.node[data-task='after']")).to_have_attribute(
        "data-state", "upstream_failed"
    )
    page.get_by_role("button", name="Retry task").click()
    expect(page.locator("#task-state")).to_have_text("success", timeout=20_000)
    expect(page.locator("pre.log")).to_have_text("fine now\n")
    expect(page.locator(".attempts tbody tr")).to_have_count(2)
    expect(page.locator("#run-state")).to_have_text("success", timeout=20_000)
    expect(page.locator("svg.graph g.node[data-task='after']")).to_have_attribute("data-state", "success")


def test_cancel_a_running_run(page: Page, server: Cluster) -> None:
    server.submit(SLEEPER)
    run_id = server.trigger("page-sleeper")
    page.goto(f"/#/runs/{run_id}/nap")
    expect(page.locator("pre.log")).to_contain_text("napping", timeout=20_000)
    expect(page.locator("#run-state")).to_have_text("running")
    page.get_by_role("button", name="Cancel run").click()
    expect(page.locator("#run-state")).to_have_text("cancelled", timeout=20_000)
    expect(page.get_by_role("button", name="Cancel run")).to_be_hidden()
    expect(page.locator("svg.graph g.node[data-task='nap']")).to_have_attribute("data-state", "cancelled")
    assert server.get(f"/api/v1/runs/{run_id}")["state"] == "cancelled"


def test_markup_from_dags_and_logs_is_shown_as_text(page: Page, server: Cluster) -> None:
    server.submit(XSS)
    run_id = server.trigger("page-xss")
    assert server.wait_run(run_id)["state"] == "success"
    page.goto("/")
    row = page.locator("tr[data-dag='page-xss']")
    expect(row).to_contain_text("<img src=x onerror=window.pwned=1> name")
    expect(row).to_contain_text("<b>bold?</b><script>")
    page.goto("/#/dags/page-xss")
    expect(page.locator("main h2")).to_have_text("<img src=x onerror=window.pwned=1> name")
    expect(page.locator("p.description")).to_have_text(
        "<b>bold?</b><script>window.pwned=1</script><img src=x onerror=window.pwned=1>"
    )
    page.goto(f"/#/runs/{run_id}/shout")
    expect(page.locator("pre.log")).to_have_text(XSS_PAYLOAD + "\n", timeout=20_000)
    expect(page.locator("#task-panel dl")).to_contain_text("<script>window.pwned=1</script>")
    assert page.evaluate("typeof window.pwned") == "undefined"
    # No element came out of the data: no <b>, no stray <img>, no second <script>.
    assert page.locator("img, main b, main script").count() == 0


@pytest.mark.parametrize(
    ("address", "heading"),
    [
        ("/#/runs/UNKNOWN", "No run UNKNOWN"),
        ("/#/runs/UNKNOWN/some-task", "No run UNKNOWN"),
        ("/#/dags/UNKNOWN", "No DAG UNKNOWN"),
    ],
)
def test_an_unknown_run_or_dag_shows_only_the_error_and_a_way_back(
    page: Page, server: Cluster, address: str, heading: str
) -> None:
    page.goto(address)
    error = page.get_by_role("alert")
    expect(error.locator("h2")).to_have_text(heading)
    expect(page).to_have_title(f"{heading} · FlowForge")
    expect(page.locator("#st-live")).to_have_text("live (events)")  # the page did not fail: the API said 404
    # Nothing else of the view: no action that could only fail, no empty section, no second title.
    view = page.locator("#view")
    expect(view.locator("button:visible")).to_have_count(0)
    expect(view.locator("section:visible, h2:visible, h3:visible, nav:visible")).to_have_count(1)  # the h2
    shown = view.inner_text()  # what is rendered, hidden parts left out
    assert shown.startswith(heading) and not {"Graph", "Trigger", "Cancel run", "Task", "Gantt"} & set(
        shown.split()
    ), shown
    # The way back.
    error.get_by_role("link", name="Back to the DAG list").click()
    expect(page).to_have_url(re.compile(r"#/$"))
    expect(page.locator("#dag-list")).to_be_visible()


def test_the_list_at_laptop_and_phone_width(page: Page, server: Cluster) -> None:
    server.submit(ETL)
    page.goto("/")
    row = page.locator("tr[data-dag='page-etl']")
    expect(row).to_be_visible()
    expect(row.locator(".squares .sq").first).to_be_visible()
    screenshot(page, "dag-list.png")  # by now with the DAGs and runs of the tests before

    page.set_viewport_size({"width": 390, "height": 844})
    expect(row).to_be_visible()
    expect(row.get_by_role("button", name="Trigger")).to_be_visible()
    assert page.locator("table.dags thead").is_hidden()  # cards: each value carries its column's name
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
        "the page scrolls sideways"
    )
    screenshot(page, "dag-list-phone.png")

    # Pause and unpause from the card; the flag is in text, not only in the button's label.
    row.get_by_role("button", name="Pause").click()
    expect(row.locator(".flag")).to_have_text("paused")
    assert server.get("/api/v1/dags/page-etl")["paused"] is True
    row.get_by_role("button", name="Unpause").click()
    expect(row.locator(".flag")).to_have_text("active")
    assert server.get("/api/v1/dags/page-etl")["paused"] is False


def test_the_token_is_asked_once_and_kept_for_the_tab(browser: Browser, tmp_path: Path) -> None:
    with running_server(tmp_path, {"FLOWFORGE_API_TOKEN": "s3cret-page-token"}) as srv:
        srv.submit(ETL)
        context = browser.new_context(base_url=srv.url)
        tab = context.new_page()
        tab.goto("/")
        dialog = tab.locator("#token-dialog")
        expect(dialog).to_be_visible()
        tab.fill("#token", "wrong")
        tab.click("#token-form button")
        expect(dialog).to_be_visible()
        expect(tab.locator("#token-note")).to_contain_text("refused")
        tab.fill("#token", "s3cret-page-token")
        tab.click("#token-form button")
        expect(tab.locator("tr[data-dag='page-etl']")).to_be_visible()
        expect(dialog).to_be_hidden()
        assert tab.evaluate("sessionStorage.getItem('flowforge.token')") == "s3cret-page-token"
        tab.reload()
        expect(tab.locator("tr[data-dag='page-etl']")).to_be_visible()
        expect(dialog).to_be_hidden()
        context.close()


def _big_dag(n: int = 500, width: int = 25) -> str:
    """`n` tasks: a root, then layers of `width` tasks each needing one or two of the layer before.
    The root fails, so a run ends at once with every other task upstream_failed."""
    lines = ["id: page-big", "tasks:", "  - {id: t000, command: exit 1}"]
    for i in range(1, n):
        layer, pos = divmod(i - 1, width)
        prev = 1 + (layer - 1) * width
        deps = (
            ["t000"] if layer == 0 else sorted({f"t{prev + pos:03d}", f"t{prev + (pos * 7 + 3) % width:03d}"})
        )
        lines.append(f"  - {{id: t{i:03d}, command: 'true', depends_on: [{', '.join(deps)}]}}")
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(300)
def test_a_500_task_dag_draws_quickly_and_its_grid_stays_usable(page: Page, server: Cluster) -> None:
    server.submit(_big_dag())
    runs = [server.trigger("page-big") for _ in range(25)]
    for run_id in runs:
        server.wait_run(run_id, timeout=120)
    started = time.monotonic()
    page.goto("/#/dags/page-big")
    expect(page.locator("svg.graph g.node")).to_have_count(500, timeout=30_000)
    expect(page.locator(".grid a.cell")).to_have_count(25 * 500, timeout=30_000)
    loaded = time.monotonic() - started
    graph_ms = page.evaluate("performance.getEntriesByName('flowforge:graph')[0].duration")
    grid_ms = page.evaluate("performance.getEntriesByName('flowforge:grid')[0].duration")
    # Usable: a live refresh only touches the cells whose state changed, and a click on a cell
    # opens that task in its run.
    page.wait_for_function(
        "() => performance.getEntriesByName('flowforge:grid-update').length > 0", timeout=10_000
    )
    refresh_ms = page.evaluate("performance.getEntriesByName('flowforge:grid-update')[0].duration")
    click_started = time.monotonic()
    page.locator(".grid a.cell").nth(25 * 250 + 24).click()
    expect(page.locator("#task-panel h3")).to_contain_text("Task t", timeout=10_000)
    click_s = time.monotonic() - click_started
    print(
        f"\n500-task DAG: graph drawn in {graph_ms:.0f} ms, 25×500 grid built in {grid_ms:.0f} ms, "
        f"grid refresh {refresh_ms:.0f} ms, page loaded in {loaded:.1f} s, cell click to run view {click_s:.1f} s"
    )


RED = "rgb(207, 34, 46)"  # --c-failed in app.css

PARAMS = """\
id: page-params
params: {region: eu, batch: 100}
tasks:
  - {id: say, command: 'echo "region=$FLOWFORGE_PARAM_REGION batch=$FLOWFORGE_PARAM_BATCH"'}
"""


def test_trigger_form_prefills_params_and_shows_the_apis_refusal(page: Page, server: Cluster) -> None:
    server.submit(PARAMS)
    page.goto("/")
    page.locator("tr[data-dag='page-params']").get_by_role("button", name="Trigger").click()
    dialog = page.locator("#trigger-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text("Trigger page-params")
    region = dialog.locator("input[name='region']")
    expect(region).to_have_value("eu")
    expect(dialog.locator("input[name='batch']")).to_have_value("100")
    region.fill("us")
    # A param the DAG does not declare: the API refuses it, and says so in the form, which stays open.
    dialog.get_by_role("button", name="Add a param").click()
    dialog.get_by_label("Param name").fill("regoin")
    dialog.get_by_label("Param value").fill("x")
    dialog.get_by_role("button", name="Trigger run").click()
    error = dialog.get_by_role("alert")
    expect(error).to_contain_text("not declared by the DAG")
    expect(error.locator("li")).to_have_text(
        re.compile(r"regoin: not declared by the DAG; did you mean 'region'\?")
    )
    expect(dialog).to_be_visible()
    screenshot(page, "trigger-form.png")
    assert server.get("/api/v1/runs", dag_id="page-params")["runs"] == []
    dialog.get_by_role("button", name="Remove this param").click()
    dialog.get_by_role("button", name="Trigger run").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#message")).to_contain_text("Triggered page-params")
    run_id = page.locator("#message a").text_content()
    assert run_id
    assert server.wait_run(run_id)["params"] == {"region": "us", "batch": "100"}
    page.goto(f"/#/runs/{run_id}/say")
    expect(page.locator("#view .meta").first).to_contain_text("Paramsbatch=100, region=us")
    expect(page.locator("pre.log")).to_have_text("region=us batch=100\n", timeout=20_000)


def test_retry_failed_tasks_gantt_attempts_explain_and_version(
    page: Page, server: Cluster, tmp_path: Path
) -> None:
    def flaky(name: str) -> str:
        marker = tmp_path / name
        return f"  - {{id: {name}, command: 'test -f {marker} || {{ touch {marker}; exit 1; }}'}}\n"

    dag = "id: page-retry-all\ntasks:\n" + flaky("left") + flaky("right")
    dag += "  - {id: joined, command: echo joined, depends_on: [left, right]}\n"
    server.submit(dag)
    run_id = server.trigger("page-retry-all")
    assert server.wait_run(run_id)["state"] == "failed"
    page.goto(f"/#/runs/{run_id}/joined")
    expect(page.locator("#run-state")).to_have_text("failed")
    meta = page.locator("#view .meta").first
    expect(meta).to_contain_text("DAG version1 (latest)")
    # Why the task is in its state, as the API explains it.
    why = server.get(f"/api/v1/runs/{run_id}/tasks/joined/explain")
    expect(page.locator(".explain-summary")).to_have_text(why["summary"])
    expect(page.locator(".explain-reasons li")).to_have_count(len(why["reasons"]))
    expect(page.locator(".explain-reasons li").first).to_contain_text(why["reasons"][0]["message"])

    page.get_by_role("button", name="Retry failed tasks").click()
    expect(page.locator("#message")).to_contain_text("3 tasks will run again (left, right, joined)")
    expect(page.locator("#run-state")).to_have_text("success", timeout=20_000)
    expect(page.get_by_role("button", name="Retry failed tasks")).to_be_hidden()
    # Each retried task: two bars in its row, the failed attempt in the failed colour.
    for task in ("left", "right"):
        bars = page.locator(f"svg.gantt .gantt-row[data-task='{task}'] rect.bar")
        expect(bars).to_have_count(2)
        expect(bars.nth(0)).to_have_attribute("data-state", "failed")
        expect(bars.nth(1)).to_have_attribute("data-state", "success")
        assert bars.nth(0).evaluate("e => getComputedStyle(e).fill") == RED
        assert bars.nth(1).evaluate("e => getComputedStyle(e).fill") == GREEN
        expect(page.locator(f"svg.gantt .gantt-row[data-task='{task}'] .gantt-note")).to_contain_text(
            "2 attempts"
        )
    expect(page.locator("svg.gantt .gantt-row[data-task='joined'] rect.bar")).to_have_count(1)
    page.mouse.move(0, 0)
    screenshot(page, "run-retried.png")
    expect(page.locator(".explain-summary")).to_have_text(
        server.get(f"/api/v1/runs/{run_id}/tasks/joined/explain")["summary"]
    )

    # A newer version of the DAG: the run keeps its own, and says it is no longer the latest.
    server.submit(dag.replace("echo joined", "echo joined again"))
    expect(meta).to_contain_text("DAG version1 (not the latest: the DAG is at version 2)", timeout=20_000)


def test_deactivate_hides_the_dag_until_activated(page: Page, server: Cluster) -> None:
    server.submit("id: page-retire\ntasks:\n  - {id: a, command: 'true'}\n")
    page.goto("/")
    row = page.locator("tr[data-dag='page-retire']")
    expect(row.locator(".flag")).to_have_text("active")
    row.get_by_role("button", name="Deactivate").click()  # the page asks first (accepted here)
    expect(page.locator("#message")).to_contain_text("page-retire is deactivated")
    expect(row).to_have_count(0)
    assert server.get("/api/v1/dags/page-retire")["active"] is False
    page.get_by_label("Show inactive DAGs").check()
    expect(row.locator(".flag")).to_have_text("inactive")
    expect(row.get_by_role("button", name="Trigger")).to_be_hidden()
    row.get_by_role("button", name="Activate").click()
    expect(row.locator(".flag")).to_have_text("active")
    expect(row.get_by_role("button", name="Trigger")).to_be_visible()
    assert server.get("/api/v1/dags/page-retire")["active"] is True
    # The DAG's own page has the same buttons.
    page.goto("/#/dags/page-retire")
    page.locator(".title-row").get_by_role("button", name="Deactivate").click()
    expect(page.locator("#view .meta").first).to_contain_text("Statusinactive")
    expect(page.locator(".title-row").get_by_role("button", name="Trigger")).to_be_hidden()
    page.locator(".title-row").get_by_role("button", name="Activate").click()
    expect(page.locator("#view .meta").first).to_contain_text("Statusactive")


def test_grid_columns_are_labelled_by_logical_date_or_start(browser: Browser, server: Cluster) -> None:
    server.submit("id: page-ticks\nschedule: '0 6 * * *'\ntasks:\n  - {id: a, command: 'true'}\n")
    assert server.http is not None
    answer = server.http.post(
        "/api/v1/dags/page-ticks/backfill", json={"start": "2026-01-01", "end": "2026-01-03"}
    )
    assert answer.status_code == 201, answer.text
    ticks = [t["run_id"] for t in answer.json()["ticks"]]
    manual = server.trigger("page-ticks")
    for run_id in [*ticks, manual]:
        server.wait_run(run_id)
    started = server.get(f"/api/v1/runs/{manual}")["started_at"]
    context = browser.new_context(base_url=server.url, timezone_id="Asia/Tokyo")  # UTC+9, no summer time
    try:
        tab = context.new_page()
        tab.goto("/#/dags/page-ticks")
        labels = {
            run_id: tab.locator(f".grid th.grid-run:has(a[href$='/{run_id}']) .run-label")
            for run_id in [*ticks, manual]
        }
        # Scheduled ticks by their logical date, in the browser's zone; a manual run by its start.
        expect(labels[ticks[0]]).to_have_text("01-01 15:00")
        expect(labels[ticks[1]]).to_have_text("01-02 15:00")
        expect(labels[manual]).to_have_text(time.strftime("%m-%d %H:%M", time.gmtime(started + 9 * 3600)))
        screenshot(tab, "grid-labels.png")
        assert "logical date 2026-01-01 15:00:00" in (
            tab.locator(f".grid a.sq[href$='/{ticks[0]}']").get_attribute("title") or ""
        )
    finally:
        context.close()


def test_task_outputs_show_as_text(page: Page, server: Cluster) -> None:
    server.submit(f"""\
id: page-outputs
tasks:
  - id: count
    command: |
      echo rows=12840 >> "$FLOWFORGE_OUTPUT"
      printf '%s\\n' 'html={XSS_PAYLOAD}' >> "$FLOWFORGE_OUTPUT"
""")
    run_id = server.trigger("page-outputs")
    assert server.wait_run(run_id)["state"] == "success"
    page.goto(f"/#/runs/{run_id}/count")
    outputs = page.locator("#task-panel .outputs")
    expect(outputs.locator("h4")).to_have_text("Outputs of attempt 1")
    expect(outputs.locator("tr").nth(0)).to_have_text("rows12840")
    expect(outputs.locator("tr").nth(1)).to_have_text("html" + XSS_PAYLOAD)
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("img, main script").count() == 0


# -- durations: a DAG's last runs as bars, the slow note of a running task ---------------------------
@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Store]]:
    """`flowforge api` alone (no scheduler, no worker: nothing moves on its own) and its store, in
    which the tests write run history with the times they choose."""
    server = Cluster(tmp_path_factory.mktemp("page-history"))
    try:
        server.start_api()
        store = open_store(f"sqlite:///{server.home / 'flowforge.db'}")
        try:
            yield server, store
        finally:
            store.close()
    finally:
        server.close()


def test_a_dags_run_durations_are_bars_in_their_states_colours(
    browser: Browser, history: tuple[Cluster, Store]
) -> None:
    server, store = history
    t0 = time.time() - 86_400
    store.put_dag(parallel_dag("page-durations", ("a",)), "src", t0)
    took = [  # seconds, how the run ended, and how the page writes the seconds
        (12.0, RunState.SUCCESS, "12s"),
        (30.0, RunState.SUCCESS, "30s"),
        (4.0, RunState.FAILED, "4.0s"),
        (60.0, RunState.SUCCESS, "1m00s"),
    ]
    ids = [
        ended_run(store, "page-durations", t0 + 600 * i, {"a": secs}, state)
        for i, (secs, state, _) in enumerate(took)
    ]
    with watched_tab(browser, server.url) as tab:
        tab.goto("/#/dags/page-durations")
        bars = tab.locator("#dag-durations svg.durations rect.bar")
        expect(bars).to_have_count(4)
        for bar, run_id, (_, state, text) in zip(bars.all(), ids, took, strict=True):  # oldest left
            expect(bar).to_have_attribute("data-run", run_id)
            expect(bar).to_have_attribute("data-state", str(state))
            expect(bar.locator("title")).to_have_text(
                re.compile(rf"^run {run_id}: {state}, took {text}\nended ")
            )
            assert bar.evaluate("e => getComputedStyle(e).fill") == (
                RED if state == RunState.FAILED else GREEN
            )
        # As tall as each run took: the 60 s run twice the 30 s one.
        heights = [float(bar.get_attribute("height") or 0) for bar in bars.all()]
        assert heights[3] == pytest.approx(2 * heights[1]) and heights[0] < heights[1]
        # Beside the chart: p50 and p95 of the successful runs (12, 30, 60 s), and 3 of 4 succeeded.
        meta = tab.locator("#dag-durations .durations-meta")
        expect(meta).to_contain_text("p5030s")
        expect(meta).to_contain_text("p951m00s")
        expect(meta).to_contain_text("Succeeded75% of 4")
        tab.mouse.move(0, 0)
        screenshot(tab, "dag-durations.png")
        bars.nth(2).click()  # the failed run
        expect(tab).to_have_url(re.compile(rf"#/runs/{ids[2]}$"))
        expect(tab.locator("#run-state")).to_have_text("failed")


def test_a_task_running_far_longer_than_usual_shows_the_slow_badge(
    browser: Browser, history: tuple[Cluster, Store]
) -> None:
    server, store = history
    now = time.time()
    store.put_dag(parallel_dag("page-slow", ("usual", "slow")), "src", now - 86_400)
    for i in range(5):  # each task's usual time: 10 s, five times
        ended_run(store, "page-slow", now - 86_400 + 600 * i, {"usual": 10.0, "slow": 10.0})
    # Both running now: one for 5 s (as usual), one for five minutes (30 times its usual time).
    run_id = running_run(store, "page-slow", {"usual": now - 5, "slow": now - 300})
    note = server.get(f"/api/v1/runs/{run_id}")["tasks"]
    message = next(t for t in note if t["task_id"] == "slow")["slow"]["message"]
    assert message.startswith("running 30× longer than usual")
    with watched_tab(browser, server.url) as tab:
        tab.goto(f"/#/runs/{run_id}")
        listed = tab.locator(".slow-list li")
        expect(listed).to_have_count(1)
        expect(listed).to_have_attribute("data-task", "slow")
        expect(listed.locator(".slow-badge")).to_have_text(message)
        node = tab.locator("svg.graph g.node[data-task='slow']")
        expect(node).to_have_class(re.compile(r"\bslow\b"))
        expect(node.locator(".node-state")).to_have_text("running · slow")
        expect(node.locator("title")).to_contain_text(message)
        expect(tab.locator("svg.graph g.node[data-task='usual']")).not_to_have_class(re.compile(r"\bslow\b"))
        tab.mouse.move(0, 0)
        screenshot(tab, "run-slow-task.png")
        listed.locator("a").click()
        expect(tab).to_have_url(re.compile(rf"#/runs/{run_id}/slow$"))
        expect(tab.locator("#task-slow")).to_have_text(message)
        expect(tab.locator("#task-slow")).to_be_visible()
        tab.locator("svg.graph g.node[data-task='usual']").click()
        expect(tab).to_have_url(re.compile(rf"#/runs/{run_id}/usual$"))
        expect(tab.locator("#task-state")).to_have_text("running")
        expect(tab.locator("#task-slow")).to_be_hidden()
