"""No super-linear work on user input: every string a DAG file, a trigger or a task's output brings.

Each case feeds one path inputs of 1×, 4× and 16× a size big enough that the 1× run takes a few
milliseconds (but no bigger than what can reach the path: 16× stays within the 1 MiB limit of a
DAG file or a request), and fails when time grows faster than the input: 16× the input must take
less than 40× the time (linear is 16×; a quadratic path takes 256×). Times are the best of a few
tries with the garbage collector off, so a busy machine slows a run down but does not fail it. In
`up` one process serves the API, schedules and runs tasks: a quadratic path there stalls everything.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from flowforge.api import create_app, views
from flowforge.core.dagfile import load_dag
from flowforge.core.errors import DagValidationError, InvalidRequest
from flowforge.core.params import resolve_params
from flowforge.core.secrets import LogMasker
from flowforge.core.sourcemask import mask_source
from flowforge.core.yamlnodes import read_yaml
from flowforge.services import Services

SLACK = 40  # allowed time ratio for 16× the input
MIN_SECS = 0.005  # the 1× input is grown until one run takes this long (or 16× reaches the limit)
MIB = 1_048_576
TRIES = 4


def _best(run: Callable[[Any], object], arg: Any, tries: int = TRIES) -> float:
    best = float("inf")
    for _ in range(tries):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            run(arg)
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    return best


def assert_linear(
    make: Callable[[int], Any],
    run: Callable[[Any], object],
    base: int,
    limit: int = MIB - 4096,
    tries: int = TRIES,
) -> list[float]:
    """Time `run(make(n))` for n = base, 4·base, 16·base (base doubled while 1× takes less than
    MIN_SECS and 16·base stays within `limit`)."""
    while _best(run, make(base), 2) < MIN_SECS and 32 * base <= limit:
        base *= 2
    t1 = _best(run, make(base), tries)
    t4 = _best(run, make(4 * base), tries)
    t16 = _best(run, make(16 * base), tries)
    times = [t1, t4, t16]
    shown = ", ".join(f"{t * 1000:.1f} ms" for t in times)
    assert t16 < SLACK * t1, f"n={base}: 1×, 4×, 16× took {shown}: faster than linear growth"
    return times


def load(text: str) -> object:
    """`load_dag`, valid or not: either way it has to come back in linear time."""
    try:
        return load_dag(text, max_bytes=1 << 30)
    except DagValidationError as e:
        return e.problems


def task(extra: str = "") -> str:
    return f"tasks:\n  - {{id: a, command: x{extra}}}\n"


def alias_tasks(n: int) -> str:
    """Tasks sharing one anchored env through aliases."""
    rows = "".join(f"  - {{id: t{i}, command: x, env: *e}}\n" for i in range(n))
    return f"id: d\nenv: &e {{A: '1', B: '2'}}\ntasks:\n{rows}"


# Each case: a DAG file of about n characters that stresses one field or one part of the reader.
DAG_FILES: dict[str, Callable[[int], str]] = {
    "long id": lambda n: f"id: {'a' * n}\n" + task(),
    "long name": lambda n: f"id: d\nname: {'x' * n}\n" + task(),
    "description of KEY words": lambda n: f"id: d\ndescription: {'KEY' * (n // 3)}\n" + task(),
    "long command": lambda n: "id: d\n" + task(", command: 'echo " + "x" * n + "'"),
    "many env variables": lambda n: (
        "id: d\nenv:\n" + "".join(f"  V{i}: v{i}\n" for i in range(n // 12)) + task()
    ),
    "many secret env variables": lambda n: (
        "id: d\nenv:\n" + "".join(f"  K{i}_TOKEN: secret-{i}\n" for i in range(n // 24)) + task()
    ),
    "long env value": lambda n: f"id: d\nenv: {{A: '{'v' * n}'}}\n" + task(),
    "long env name": lambda n: f"id: d\nenv: {{{'A' * n}: v}}\n" + task(),
    "many tags": lambda n: "id: d\ntags: [" + ", ".join(["etl"] * (n // 5)) + "]\n" + task(),
    "long tag": lambda n: f"id: d\ntags: [{'t' * n}]\n" + task(),
    "long schedule": lambda n: "id: d\nschedule: '" + ",".join(["1"] * (n // 2)) + " * * * *'\n" + task(),
    "long timezone": lambda n: f"id: d\ntimezone: Europe/{'x' * n}\n" + task(),
    "many params": lambda n: "id: d\nparams:\n" + "".join(f"  p{i}: 0{i}\n" for i in range(n // 10)) + task(),
    "long param default": lambda n: f"id: d\nparams: {{p: {'0' * n}}}\n" + task(),
    "long unknown key": lambda n: f"id: d\n{'k' * n}: 1\n" + task(),
    "many unknown keys": lambda n: (
        "id: d\ntasks:\n" + "".join(f"  - {{id: t{i}, command: x, comand: y}}\n" for i in range(n // 36))
    ),
    "many unknown dependencies": lambda n: (
        "id: d\ntasks:\n"
        + "".join(f"  - {{id: t{i}, command: x, depends_on: [u{i}]}}\n" for i in range(n // 44))
    ),
    "a long cycle": lambda n: (
        "id: d\ntasks:\n"
        + "".join(
            f"  - {{id: t{i}, command: x, depends_on: [t{(i + 1) % (n // 44)}]}}\n" for i in range(n // 44)
        )
    ),
    "a long flow sequence": lambda n: (
        "id: d\ntasks:\n  - {id: a, command: x, depends_on: [" + ", ".join(["a"] * (n // 3)) + "]}\n"
    ),
    "aliases of an anchored env": lambda n: alias_tasks(n // 40),
    "base-60 number": lambda n: "id: d\ndefault_retries: 1" + ":1" * (n // 2) + "\n" + task(),
    "a number of many digits": lambda n: "id: d\ndefault_retries: " + "1" * n + "\n" + task(),
    "escapes in a quoted scalar": lambda n: 'id: d\ndescription: "' + "\\x41" * (n // 4) + '"\n' + task(),
    "a long plain key in a flow mapping": lambda n: "id: d\nenv: {" + "k" * n + ": v}\n" + task(),
}


@pytest.mark.parametrize("make", DAG_FILES.values(), ids=DAG_FILES)
def test_reading_a_dag_file_is_linear(make: Callable[[int], str]) -> None:
    assert_linear(make, load, 4_000)


def test_the_yaml_reader_is_linear_on_nesting_and_anchors() -> None:
    def nested(n: int) -> str:  # rows of 60-deep flow collections, each anchored and aliased
        row = "[" * 60 + "1" + "]" * 60
        return "".join(f"r{i}: &a{i} {row}\nq{i}: *a{i}\n" for i in range(n // 130))

    assert_linear(nested, read_yaml, 10_000)


# -- params at trigger --------------------------------------------------------------------------------
def _resolve(args: tuple[dict[str, Any], dict[str, Any]]) -> object:
    try:
        return resolve_params(*args)
    except InvalidRequest as e:
        return e.details


PARAMS: dict[str, Callable[[int], tuple[dict[str, Any], dict[str, Any]]]] = {
    "many given params": lambda n: ({}, {f"p{i}": f"v{i}" for i in range(n // 8)}),
    "many typos of declared params": lambda n: (
        {f"param{i}": "" for i in range(50)},
        {f"parma{i}": "x" for i in range(n // 8)},
    ),
    "a long undeclared name": lambda n: ({"region": "eu"}, {"r" * n: "x"}),
    "a long value with a NUL at its end": lambda n: ({}, {"p": "v" * n + "\x00"}),
    "a long value with a surrogate at its end": lambda n: ({}, {"p": "v" * n + "\ud800"}),
}


@pytest.mark.parametrize("make", PARAMS.values(), ids=PARAMS)
def test_resolving_params_is_linear(make: Callable[[int], tuple[dict[str, Any], dict[str, Any]]]) -> None:
    assert_linear(make, _resolve, 4_000)


# -- masking secrets: in a DAG's source and in a task's log ------------------------------------------
SOURCES: dict[str, Callable[[int], str]] = {
    # The old pattern over the source took 27 s for one 48 KB word of KEYs.
    "a word of KEYs": lambda n: f"id: d\ndescription: {'KEY' * (n // 3)}\n" + task(),
    "KEY words in a comment": lambda n: "id: d\n# " + "a_KEY_" * (n // 6) + "\n" + task(),
    "many secrets": lambda n: (
        "id: d\nenv:\n" + "".join(f"  K{i}_TOKEN: v{i:07d}-abcdef\n" for i in range(n // 30)) + task()
    ),
    "a long secret and text that almost matches it": lambda n: (
        f"id: d\nenv: {{API_KEY: {'a' * (n // 2)}b}}\ndescription: {'a' * (n // 2)}\n" + task()
    ),
    "secrets that overlap one another": lambda n: (
        "id: d\nenv:\n"
        + "".join(f"  K{i}_KEY: {'ab' * (i % 7 + 2)}\n" for i in range(50))
        + f"description: {'ab' * (n // 2)}\n"
        + task()
    ),
}


@pytest.mark.parametrize("make", SOURCES.values(), ids=SOURCES)
def test_masking_a_source_is_linear(make: Callable[[int], str]) -> None:
    assert_linear(make, mask_source, 4_000)


def _feed(args: tuple[list[str], str, int]) -> str:
    secrets, text, chunk = args
    masker = LogMasker(secrets)
    out = [masker.feed(text[i : i + chunk]) for i in range(0, len(text), chunk)]
    return "".join(out) + masker.flush()


LOGS: dict[str, Callable[[int], tuple[list[str], str, int]]] = {
    "a long secret and output that almost matches it": lambda n: (["a" * n + "b"], "a" * (2 * n), 4096),
    "the same, in chunks of one character": lambda n: (["a" * (n // 8) + "b"], "a" * n, 1),
    "a long secret whose tail the output repeats": lambda n: (["b" + "a" * n], "a" * (2 * n), 4096),
    "many secrets": lambda n: ([f"secret-{i:06d}" for i in range(n // 16)], "secret-0000 " * (n // 12), 4096),
    "secrets that overlap one another": lambda n: (
        ["abab", "ababab", "babab", "ab" * 40],
        "ab" * n,
        4096,
    ),
}


@pytest.mark.parametrize("make", LOGS.values(), ids=LOGS)
def test_masking_a_log_is_linear(make: Callable[[int], tuple[list[str], str, int]]) -> None:
    assert_linear(make, _feed, 4_000, limit=8 * MIB)


# -- through the API: submit a hostile DAG, then read it back -----------------------------------------
@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services, api_token="")) as c:
        yield c


HOSTILE = {
    "a word of KEYs": lambda n, i: f"id: w{i}\ndescription: {'KEY' * (n // 3)}\n" + task(),
    "many secrets": lambda n, i: (
        f"id: m{i}\nenv:\n"
        + "".join(f"  K{j:06d}_TOKEN: v{j:07d}abcdefgh\n" for j in range(n // 36))
        + task()
    ),
    "a long secret": lambda n, i: (
        f"id: l{i}\nenv: {{API_KEY: {'a' * (n // 2 - 60)}b}}\ndescription: {'a' * (n // 2 - 60)}\n" + task()
    ),
}


@pytest.mark.parametrize("make", HOSTILE.values(), ids=HOSTILE)
def test_submitting_and_reading_back_a_hostile_dag_is_linear(
    client: TestClient, make: Callable[[int, int], str], capsys: pytest.CaptureFixture[str]
) -> None:
    made = iter(range(1_000))

    def submit_and_get(text: str) -> None:
        dag_id = text.split("\n", 1)[0][4:]
        answer = client.post(
            "/api/v1/dags", content=text.encode(), headers={"content-type": "application/yaml"}
        )
        assert answer.status_code == 201, answer.text[:300]
        views.masked_source.cache_clear()  # time the masking itself, not the cache
        assert client.get(f"/api/v1/dags/{dag_id}").status_code == 200

    times = assert_linear(lambda n: make(n, next(made)), submit_and_get, 64_000, tries=3)
    with capsys.disabled():
        figures = ", ".join(f"{t * 1000:.0f} ms" for t in times)
        print(f"\nsubmit + GET of a hostile DAG of 64 KB, 256 KB, 1 MB: {figures}")
