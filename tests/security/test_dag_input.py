"""Hostile and surprising DAG files, params and sources, through the API as a user sends them.

Each attack gets the answer a user should see: secrets masked whatever the YAML form, a located
422 for what cannot run (aliases that expand too far, NUL characters, absurd retries or timeouts,
random cron), answers no larger than the request, and values that reach a task as written.
"""

from __future__ import annotations

import json
import resource
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from flowforge import operations as ops
from flowforge.api import create_app
from flowforge.core.dagfile import load_dag
from flowforge.core.errors import MAX_PROBLEMS
from flowforge.core.model import RunState
from flowforge.services import Services
from flowforge.store.dags import canonical
from tests.harness import run_flowforge
from tests.test_engine import Engine

YAML = {"content-type": "application/yaml"}


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services, api_token="")) as c:
        yield c


def post(client: TestClient, text: str):
    return client.post("/api/v1/dags", content=text.encode(), headers=YAML)


def problems_of(resp) -> list[dict]:
    assert resp.status_code == 422, resp.text[:500]
    err = resp.json()["error"]
    assert err["code"] == "invalid_dag" and "Traceback" not in resp.text
    return err["details"]


# -- secrets in the returned source, whatever the YAML form ----------------------------------------
SECRET_FORMS = {
    "folded block": ("env:\n  API_KEY: >-\n    s3cr3t-folded-one\n    s3cr3t-folded-two\n", "folded"),
    "literal block": ("env:\n  API_KEY: |\n    s3cr3t-literal\n", "s3cr3t-literal"),
    "value on the next line": ("env:\n  DB_PASSWORD:\n    s3cr3t-next-line\n", "s3cr3t-next-line"),
    "explicit key": ("env:\n  ? API_SECRET\n  : s3cr3t-explicit\n", "s3cr3t-explicit"),
    "JSON-style flow mapping": ('env: {"SECRET": "s3cr3t-json", "STAGE":"prod"}\n', "s3cr3t-json"),
    "JSON without spaces": ('env: {"DB_TOKEN":"s3cr3t-tight"}\n', "s3cr3t-tight"),
    "alias of a value anchored elsewhere": (
        "env:\n  SHARED: &pw s3cr3t-anchored\n  DB_PASSWORD: *pw\n",
        "s3cr3t-anchored",
    ),
    "key spelled with an escape": ('env:\n  "DB_P\\x41SSWORD": s3cr3t-escaped-key\n', "s3cr3t-escaped-key"),
    "plain value over two lines": ("env:\n  DB_PASSWORD: s3cr3t-plain\n    s3cr3t-continued\n", "continued"),
    "single-quoted with a space": ("env:\n  DB_PASSWORD: 's3cr3t quoted'\n", "s3cr3t quoted"),
    "a param": ("params:\n  api_token: s3cr3t-param\n", "s3cr3t-param"),
    "also written in a command and a comment": (
        "env: {DB_PASSWORD: s3cr3t-reused}  # s3cr3t-reused\n",
        "s3cr3t-reused",
    ),
}


@pytest.mark.parametrize(("block", "secret"), SECRET_FORMS.values(), ids=SECRET_FORMS)
def test_a_secret_is_masked_in_the_returned_source_whatever_its_yaml_form(
    client: TestClient, block: str, secret: str
) -> None:
    text = f"id: masked\n{block}tasks:\n  - id: t\n    command: echo s3cr3t-reused\n"
    submitted = post(client, text)
    assert submitted.status_code == 201, submitted.text
    shown = client.get("/api/v1/dags/masked").json()
    for answer in (submitted.json(), shown):
        assert secret not in answer["source"], answer["source"]
        assert "'***'" in answer["source"] and answer["source"].startswith("id: masked\n")
    assert secret not in client.get("/api/v1/dags").text


def test_masking_keeps_the_rest_of_the_source_as_written(client: TestClient) -> None:
    text = (
        "id: kept  # a comment\n"
        "env:\n  STAGE: &s prod\n  DB_PASSWORD: &pw hunter22\n  OTHER: *s\n"
        "tasks:\n  - {id: t, command: 'echo $STAGE', env: {API_KEY: *pw}}\n"
    )
    source = post(client, text).json()["source"]
    assert source == (
        "id: kept  # a comment\n"
        "env:\n  STAGE: &s prod\n  DB_PASSWORD: &pw '***'\n  OTHER: *s\n"
        "tasks:\n  - {id: t, command: 'echo $STAGE', env: {API_KEY: *pw}}\n"
    )


# -- aliases cannot make a large DAG out of a small request ----------------------------------------
def alias_flood(anchor_bytes: int, aliases: int) -> str:
    big = "c" * anchor_bytes
    return (
        f"id: flood\ndescription: &c {big}\ntags: [" + ", ".join(["*c"] * aliases) + "]\n"
        "tasks: [{id: a, command: x}]\n"
    )


def test_aliases_that_expand_past_the_limit_are_refused_where_they_cross_it(
    client: TestClient, services: Services
) -> None:
    text = alias_flood(100_000, 3_000)  # a 111 KB request that expanded to a 307 MB stored row
    assert len(text) < 120_000
    resp = post(client, text)
    [p] = problems_of(resp)
    # 112 KB in the file, then aliases of 100 KB each: the 41st crosses 4 MiB.
    assert (p["line"], p["column"], p["field"]) == (3, 8 + 4 * 40, "tags[40]")
    assert "written out the document would be more than 4,194,304 bytes" in p["message"]
    assert len(resp.content) < 2_000
    assert services.store.list_dags() == []


def test_shared_defaults_over_thousands_of_tasks_still_load() -> None:
    """Anchors are for sharing: 5,000 tasks merging 400 bytes of defaults (2 MB written out) load."""
    env = ", ".join(f"V{i}: value-{i:04d}" for i in range(25))
    tasks = "".join(f"  - {{<<: *base, id: t{i}}}\n" for i in range(1, 5_000))
    text = (
        f"id: shared\ntasks:\n  - &base {{id: t0, command: 'echo hi', retries: 2, env: {{{env}}}}}\n{tasks}"
    )
    spec = load_dag(text)
    assert len(spec.tasks) == 5_000 and spec.tasks[-1].env == spec.tasks[0].env
    assert len(text) < 200_000 and 1_500_000 < len(canonical(spec)) < 4 * 1_048_576


def test_the_largest_dag_aliases_allow_stays_a_few_mebibytes_when_stored() -> None:
    spec = load_dag(alias_flood(100_000, 40))  # just under the limit
    assert len(canonical(spec)) < 5 * 1_048_576


# -- problems: bounded in number and in what each one quotes --------------------------------------
def test_an_invalid_file_gets_an_answer_smaller_than_itself(client: TestClient) -> None:
    """Each task quotes an aliased 100 KB key: once a 205 MB answer to a 109 KB request."""
    key = "k" * 100_000
    tasks = "".join(f"  - {{id: t{i}, command: x, *k : 1}}\n" for i in range(35))
    text = f"id: loud\nname: &k {key}\ntasks:\n{tasks}"
    resp = post(client, text)
    found = problems_of(resp)
    assert len(resp.content) < 20_000 < len(text)
    assert len(found) == 35
    p = found[0]
    assert (p["line"], p["column"], p["field"]) == (4, 26, "tasks[0]." + "k" * 59 + "…")
    assert p["message"].startswith("unknown key '" + "k" * 59 + "…'")


def test_at_most_50_problems_are_listed_then_how_many_more(client: TestClient) -> None:
    tasks = "".join(f"  - {{id: t{i}, command: x, comand: y}}\n" for i in range(2_000))
    resp = post(client, f"id: typos\ntasks:\n{tasks}")
    found = problems_of(resp)
    assert resp.json()["error"]["message"] == "DAG is invalid: 2,000 problem(s)"
    assert len(found) == MAX_PROBLEMS + 1
    assert [p["line"] for p in found[:MAX_PROBLEMS]] == list(range(3, 3 + MAX_PROBLEMS))  # file order
    assert found[-1] == {
        "field": "",
        "line": None,
        "column": None,
        "message": "… and 1,950 more problems (not listed)",
    }


def test_offline_validate_of_a_hostile_1_mib_file_is_bounded(tmp_path: Path) -> None:
    """Aliased 100 KB keys in every task of a 1 MiB file once made `flowforge validate` run out of memory."""
    key = "k" * 100_000
    row = "  - {id: t, command: x, *k : 1, *k : 2, *k : 3}\n"
    text = f"id: huge\nname: &k {key}\ntasks:\n" + row * ((1_048_000 - 100_030) // len(row))
    path = tmp_path / "huge.yaml"
    path.write_text(text)
    assert 1_000_000 < path.stat().st_size <= 1_048_576
    done = run_flowforge("validate", str(path), timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(done.stdout) + len(done.stderr) < 20_000  # at most 50 problems, each quoting 60 characters
    assert "would be more than 4,194,304 bytes" in done.stdout + done.stderr
    # The peak resident memory of the largest child this test process has waited for, in KiB.
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 1_048_576


# -- what cannot reach a process, and what would never end ----------------------------------------
CANNOT_RUN = {
    "NUL in a command": (
        'id: d\ntasks:\n  - id: a\n    command: "echo a\\0b"\n',
        ("tasks[0].command", 4, 14),
        "'command' contains a NUL character",
    ),
    "NUL in an env value": (
        'id: d\nenv: {A: "x\\x00y"}\ntasks: [{id: a, command: x}]\n',
        ("env.A", 2, 10),
        "environment variable 'A' contains a NUL character",
    ),
    "NUL in a param default": (
        'id: d\nparams:\n  region: "eu\\0"\ntasks: [{id: a, command: x}]\n',
        ("params.region", 3, 11),
        "param 'region' contains a NUL character",
    ),
    "retries beyond 100": (
        "id: d\ntasks:\n  - {id: a, command: x, retries: 10000000000000000000000000000000000000000}\n",
        ("tasks[0].retries", 3, 34),
        "'retries' must be at most 100, not 10000000000000000000000000000000000000000",
    ),
    "default_retries beyond 100": (
        "id: d\ndefault_retries: 101\ntasks: [{id: a, command: x}]\n",
        ("default_retries", 2, 18),
        "'default_retries' must be at most 100, not 101",
    ),
    "a timeout of 1e+300": (
        "id: d\ntasks:\n  - {id: a, command: x, timeout_secs: 1.0e+300}\n",
        ("tasks[0].timeout_secs", 3, 39),
        "'timeout_secs' must be at most 604,800 seconds (7 days), not 1.0e+300",
    ),
    "a retry delay over 7 days": (
        "id: d\nretry_delay_secs: 604801\ntasks: [{id: a, command: x}]\n",
        ("retry_delay_secs", 2, 19),
        "must be at most 604,800 seconds (7 days), not 604801",
    ),
    "a run timeout written with 200 digits": (
        "id: d\nrun_timeout_secs: " + "9" * 200 + "\ntasks: [{id: a, command: x}]\n",
        ("run_timeout_secs", 2, 19),
        "must be at most 604,800 seconds (7 days), not " + "9" * 59 + "…",
    ),
    "max_active_runs beyond a million": (
        "id: d\nmax_active_runs: 0x10000000000000000\ntasks: [{id: a, command: x}]\n",
        ("max_active_runs", 2, 18),
        "'max_active_runs' must be at most 1,000,000, not 0x10000000000000000",
    ),
    "a random cron field": (
        "id: d\nschedule: 0 R * * *\ntasks: [{id: a, command: x}]\n",
        ("schedule", 2, 11),
        "uses R (random), which FlowForge does not support",
    ),
}


@pytest.mark.parametrize(("text", "where", "phrase"), CANNOT_RUN.values(), ids=CANNOT_RUN)
def test_what_cannot_run_is_refused_with_its_place(
    client: TestClient, services: Services, text: str, where: tuple[str, int, int], phrase: str
) -> None:
    [p] = problems_of(post(client, text))
    assert (p["field"], p["line"], p["column"]) == where, p
    assert phrase in p["message"], p["message"]
    assert services.store.list_dags() == []


def test_trigger_params_a_task_cannot_receive_are_refused_by_name(
    client: TestClient, services: Services
) -> None:
    assert post(client, "id: p\nparams: {region: eu}\ntasks: [{id: a, command: x}]\n").status_code == 201
    for value, phrase in (("eu\x00us", "NUL character"), ("eu\ud800", "unpaired surrogate")):
        body = json.dumps({"dag_id": "p", "params": {"region": value}})  # JSON may carry either
        resp = client.post("/api/v1/runs", content=body, headers={"content-type": "application/json"})
        assert resp.status_code == 422, resp.text
        err = resp.json()["error"]
        assert err["code"] == "invalid_params" and "region" in err["message"]
        assert err["details"][0]["param"] == "region" and phrase in err["details"][0]["message"]
    assert services.store.list_runs() == []


def test_a_param_typo_at_trigger_gets_did_you_mean(client: TestClient) -> None:
    assert post(client, "id: p\nparams: {region: eu}\ntasks: [{id: a, command: x}]\n").status_code == 201
    resp = client.post("/api/v1/runs", json={"dag_id": "p", "params": {"regoin": "us"}})
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert "did you mean 'region'?" in err["message"]
    assert err["details"] == [
        {"param": "regoin", "message": "not declared by the DAG; did you mean 'region'?"}
    ]


# -- values reach the task as written ----------------------------------------------------------------
@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = Engine(tmp_path, slots=1)
    e.start()
    try:
        yield e
    finally:
        e.close()


def test_env_values_and_param_defaults_reach_the_task_as_written(engine: Engine) -> None:
    engine.submit(
        "id: written\n"
        "params: {flag: no, version: 1.10}\n"
        "env: {MODE: 0755, AT: 12:30, SWITCH: on}\n"
        "tasks:\n"
        "  - id: t\n"
        '    command: echo "$MODE $AT $SWITCH $FLOWFORGE_PARAM_FLAG $FLOWFORGE_PARAM_VERSION"\n'
    )
    run = ops.trigger_run(engine.store, engine.queue, "written").run
    assert engine.wait(run.run_id).state == RunState.SUCCESS
    assert engine.log(run.run_id, "t") == "0755 12:30 on no 1.10\n"
