"""Task outputs: the rules of the `$FLOWFORGE_OUTPUT` file, its names downstream, and the executor reading it.

The rules are a pure function (`core.outputs.parse_outputs`), tested as a table; the file itself is
made and read by `run_command` around real `/bin/sh` commands.
"""

from __future__ import annotations

import os
import stat
import tracemalloc
from pathlib import Path

import pytest

from flowforge.core.outputs import (
    MAX_OUTPUT_BYTES,
    MAX_OUTPUT_KEYS,
    OutputsError,
    env_name_part,
    parse_outputs,
    upstream_env,
)
from flowforge.engine.executor import ExecResult, attempt_context, run_command
from flowforge.engine.outputs import read_bounded

PATH = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


# -- the rules ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"", {}),
        (b"rows=42\n", {"rows": "42"}),
        (b"rows=42", {"rows": "42"}),  # no newline at the end
        (b"a=1\nb=2\n", {"a": "1", "b": "2"}),
        (b"a=1\r\nb=2\r\n", {"a": "1", "b": "2"}),  # CRLF: the CR is not part of the value
        (b"a=x\r\r\n", {"a": "x\r"}),  # only one trailing CR goes
        (b"a=1\na=2\n", {"a": "2"}),  # a later key overrides an earlier one
        (b"empty=\n", {"empty": ""}),
        (b"eq=a=b==c\n", {"eq": "a=b==c"}),  # the value is the rest of the line
        (b"q=\"quoted\" 'as written' \n", {"q": "\"quoted\" 'as written' "}),  # no quoting rules
        (b"sp= two  spaces \n", {"sp": " two  spaces "}),
        (b"\n\n   \n\t\nk=v\n\n", {"k": "v"}),  # blank lines
        (b"# a comment\n#x=1\nk=v\n", {"k": "v"}),  # comments
        (b"_under_1=u\n", {"_under_1": "u"}),
        (b"K" * 64 + b"=long\n", {"K" * 64: "long"}),
        ("city=Zürich ✓\n".encode(), {"city": "Zürich ✓"}),
        (b"shell=$(touch /tmp/x); rm -rf /\n", {"shell": "$(touch /tmp/x); rm -rf /"}),
        (b"tab=a\tb\n", {"tab": "a\tb"}),
    ],
)
def test_good_outputs(text: bytes, expected: dict[str, str]) -> None:
    assert parse_outputs(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"foo bar\n", "task outputs: line 1: 'foo bar' is not KEY=VALUE"),
        (b"a=1\n\nfoo bar\n", "task outputs: line 3: 'foo bar' is not KEY=VALUE"),
        (b"=value\n", "task outputs: line 1: '' is not a key"),
        (b"1abc=x\n", "task outputs: line 1: '1abc' is not a key"),
        (b"my-key=x\n", "task outputs: line 1: 'my-key' is not a key"),
        (b"key =x\n", "task outputs: line 1: 'key ' is not a key"),
        (b" key=x\n", "task outputs: line 1: ' key' is not a key"),
        (b"K" * 65 + b"=x\n", "is not a key: letters, digits and _, not starting with a digit, at most 64"),
        (b"a=1\nb=\xff\xfe\n", "task outputs: line 2: not UTF-8 text"),
        (b"a=x\x00y\n", "task outputs: line 1: the value of a holds a NUL character"),
        (b"\x1b[2Jclear\n", "task outputs: line 1: '\\x1b[2Jclear' is not KEY=VALUE"),  # escaped, not sent
    ],
)
def test_malformed_outputs_name_the_line(text: bytes, message: str) -> None:
    with pytest.raises(OutputsError) as caught:
        parse_outputs(text)
    assert message in str(caught.value)


def test_a_long_bad_line_is_quoted_short() -> None:
    with pytest.raises(OutputsError) as caught:
        parse_outputs(b"x" * 5000)
    assert len(str(caught.value)) < 120 and "…" in str(caught.value)


def test_the_size_limit_is_64_kib_exactly() -> None:
    whole = b"k=" + b"v" * (MAX_OUTPUT_BYTES - 3) + b"\n"
    assert len(whole) == MAX_OUTPUT_BYTES and parse_outputs(whole)["k"] == "v" * (MAX_OUTPUT_BYTES - 3)
    with pytest.raises(OutputsError, match=r"^task outputs: over the 64 KiB limit$"):
        parse_outputs(whole + b"\n")


def test_at_most_100_keys_counted_once_each() -> None:
    hundred = "".join(f"k{i}={i}\n" for i in range(MAX_OUTPUT_KEYS)).encode()
    assert len(parse_outputs(hundred)) == 100
    assert len(parse_outputs(hundred + hundred)) == 100  # written twice: still 100 keys
    with pytest.raises(OutputsError, match=r"^task outputs: line 101: more than 100 keys$"):
        parse_outputs(hundred + b"one_more=x\n")


@pytest.mark.parametrize(
    ("task_id", "part"),
    [("extract", "EXTRACT"), ("extract-users", "EXTRACT_USERS"), ("v1.2", "V1_2"), ("Café", "CAF_")],
)
def test_task_ids_become_names(task_id: str, part: str) -> None:
    assert env_name_part(task_id) == part


def test_upstream_env_names_each_output_by_task_and_key() -> None:
    env = upstream_env({"extract-users": {"rows": "42", "Path_1": "/x"}, "b": {}})
    assert env == {
        "FLOWFORGE_UPSTREAM_EXTRACT_USERS_ROWS": "42",
        "FLOWFORGE_UPSTREAM_EXTRACT_USERS_PATH_1": "/x",
    }
    # Two tasks whose names come out the same: the one sorting last wins, whatever the order given.
    assert upstream_env({"a_b": {"k": "2"}, "a-b": {"k": "1"}}) == {"FLOWFORGE_UPSTREAM_A_B_K": "2"}


def test_upstream_outputs_join_the_attempt_context() -> None:
    ctx = attempt_context(
        dag_id="d", run_id="r", task_id="load", attempt=1, logical_date="", params={},
        upstream_outputs={"extract": {"rows": "42"}},
    )  # fmt: skip
    assert ctx["FLOWFORGE_UPSTREAM_EXTRACT_ROWS"] == "42" and ctx["FLOWFORGE_TASK_ID"] == "load"


# -- the executor ---------------------------------------------------------------------------------
def run(command: str, **env: str) -> tuple[ExecResult, str]:
    out: list[str] = []
    result = run_command(command, env={**PATH, **env}, timeout=30, sink=out.append)
    return result, "".join(out)


def test_a_command_finds_an_empty_private_file_and_its_outputs_come_back() -> None:
    result, log = run(
        'stat -c "%a %s" "$FLOWFORGE_OUTPUT"; stat -c "%a" "$(dirname "$FLOWFORGE_OUTPUT")";'
        ' echo "$FLOWFORGE_OUTPUT"; echo "rows=42" >> "$FLOWFORGE_OUTPUT"; echo "name=a b" >> "$FLOWFORGE_OUTPUT"'
    )
    assert result.succeeded and result.error is None
    assert result.outputs == {"rows": "42", "name": "a b"}
    mode_size, dir_mode, path = log.splitlines()
    assert (mode_size, dir_mode) == ("600 0", "700")
    assert not Path(path).exists()  # removed afterwards


def test_files_a_task_left_beside_its_outputs_file_go_with_the_attempt() -> None:
    result, log = run(
        'echo k=v > "$FLOWFORGE_OUTPUT.part"; mkdir "$FLOWFORGE_OUTPUT.d"; echo "$FLOWFORGE_OUTPUT"'
    )
    path = Path(log.strip())
    assert result.succeeded and result.outputs == {}
    assert not path.with_name(path.name + ".part").exists() and not path.with_name(path.name + ".d").exists()
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"  # the process's folder stays private


def test_a_command_run_without_a_shell_gets_the_file_too(tmp_path: Path) -> None:
    script = tmp_path / "write"
    script.write_text('#!/bin/sh\necho "via=script" > "$FLOWFORGE_OUTPUT"\n')
    script.chmod(0o755)
    result, _ = run(str(script))
    assert result.succeeded and result.outputs == {"via": "script"}


def test_each_attempt_gets_its_own_file() -> None:
    _, path1 = run('echo "$FLOWFORGE_OUTPUT"; echo a=1 > "$FLOWFORGE_OUTPUT"')
    second, path2 = run('echo "$FLOWFORGE_OUTPUT"; cat "$FLOWFORGE_OUTPUT"')
    assert path1 != path2 and second.outputs == {} and path2.count("\n") == 1


def test_a_task_env_cannot_point_the_file_elsewhere(tmp_path: Path) -> None:
    elsewhere = tmp_path / "mine"
    result, log = run(
        'echo "$FLOWFORGE_OUTPUT"; echo k=v >> "$FLOWFORGE_OUTPUT"', FLOWFORGE_OUTPUT=str(elsewhere)
    )
    assert result.outputs == {"k": "v"} and log.strip() != str(elsewhere) and not elsewhere.exists()


def test_malformed_outputs_fail_the_attempt_despite_exit_0() -> None:
    result, _ = run("printf 'a=1\\nb=2\\nfoo bar\\n' > \"$FLOWFORGE_OUTPUT\"")
    assert result.exit_code == 0 and not result.succeeded
    assert result.error == "task outputs: line 3: 'foo bar' is not KEY=VALUE"
    assert result.outputs == {}


def test_a_failing_command_keeps_its_own_error_first() -> None:
    failed, _ = run('echo "rows=1" > "$FLOWFORGE_OUTPUT"; exit 3')
    assert (failed.exit_code, failed.error, failed.outputs) == (3, "exit code 3", {"rows": "1"})
    both, _ = run('echo "bad line" > "$FLOWFORGE_OUTPUT"; exit 3')
    assert both.error == "exit code 3; task outputs: line 1: 'bad line' is not KEY=VALUE"


def test_101_keys_fail_the_attempt() -> None:
    result, _ = run('i=0; while [ $i -le 100 ]; do echo "k$i=$i"; i=$((i+1)); done > "$FLOWFORGE_OUTPUT"')
    assert result.exit_code == 0 and result.error == "task outputs: line 101: more than 100 keys"


@pytest.mark.parametrize("size", [MAX_OUTPUT_BYTES + 1, 1024 * 1024, 10 * 1024 * 1024])
def test_an_oversize_file_fails_and_is_read_only_to_the_limit(size: int) -> None:
    command = f'head -c {size - 2} /dev/zero | tr "\\0" v | sed "1s/^/k=/" > "$FLOWFORGE_OUTPUT"'
    tracemalloc.start()
    try:
        result, _ = run(command)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0 and result.error == "task outputs: over the 64 KiB limit"
    # However large the file, the worker held about the limit, not the file (10 MB at the end).
    assert peak < 1024 * 1024, peak


def test_a_fifo_in_the_files_place_is_refused_without_waiting() -> None:
    result, _ = run('rm "$FLOWFORGE_OUTPUT" && mkfifo "$FLOWFORGE_OUTPUT"')
    assert (
        result.exit_code == 0
        and result.error == "task outputs: $FLOWFORGE_OUTPUT is no longer a regular file"
    )


def test_a_symlink_in_the_files_place_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_text("password=hunter2\n")
    result, _ = run(f'ln -sf {target} "$FLOWFORGE_OUTPUT"')
    assert result.error is not None and result.error.startswith("task outputs: cannot read $FLOWFORGE_OUTPUT")
    assert result.outputs == {}


def test_a_file_renamed_into_place_is_read_and_a_removed_one_means_none() -> None:
    renamed, _ = run('echo k=v > "$FLOWFORGE_OUTPUT.tmp"; mv "$FLOWFORGE_OUTPUT.tmp" "$FLOWFORGE_OUTPUT"')
    assert renamed.succeeded and renamed.outputs == {"k": "v"}
    removed, _ = run('rm "$FLOWFORGE_OUTPUT"')
    assert removed.succeeded and removed.outputs == {}


def test_read_bounded_reads_at_most_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100_000)
    assert read_bounded(str(path), 10) == b"x" * 10
    assert read_bounded(str(path), 200_000) == b"x" * 100_000
    assert read_bounded(str(tmp_path / "missing"), 10) == b""
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OutputsError, match="no longer a regular file"):
        read_bounded(str(tmp_path / "fifo"), 10)
    assert stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode)
