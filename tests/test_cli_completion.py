"""Shell completion, as a shell asks for it: the real `flowforge` process with `_FLOWFORGE_COMPLETE` set,
DAG and run ids from a real API server, and nothing (at once) from a server that does not answer."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from flowforge.api import create_app
from flowforge.client import ApiClient
from flowforge.services import Services
from tests.cli_support import GOOD, serving
from tests.harness import clean_env

FLOWFORGE = [sys.executable, "-m", "flowforge"]


def complete(words: str, url: str, shell: str = "bash") -> list[str]:
    """What the shell would be offered for the command line `words` (the last word being typed)."""
    env = {**clean_env(), "_FLOWFORGE_COMPLETE": f"complete_{shell}", "FLOWFORGE_API_URL": url}
    if shell == "bash":
        env |= {"COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)}
    else:
        env |= {"_TYPER_COMPLETE_ARGS": words, "_TYPER_COMPLETE_FISH_ACTION": "get-args"}
    done = subprocess.run(FLOWFORGE, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done.stdout.split()


@pytest.fixture
def url(services: Services) -> Iterator[str]:
    with serving(create_app(services, api_token="")) as served:
        try:
            yield served
        finally:
            services.stopping.set()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_script_hands_the_command_line_to_flowforge(shell: str) -> None:
    done = subprocess.run([*FLOWFORGE, "completion", shell], env=clean_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "_FLOWFORGE_COMPLETE" in done.stdout and "flowforge" in done.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_sourcing_the_script_registers_the_completion() -> None:
    script = subprocess.run(
        [*FLOWFORGE, "completion", "bash"], env=clean_env(), capture_output=True, text=True
    )
    shown = subprocess.run(
        ["bash", "-c", f"{script.stdout}\ncomplete -p flowforge"], capture_output=True, text=True, timeout=30
    )
    assert shown.returncode == 0 and "_flowforge_completion" in shown.stdout, shown.stderr


def test_an_unknown_shell_is_refused_with_the_choices() -> None:
    done = subprocess.run([*FLOWFORGE, "completion", "tcsh"], env=clean_env(), capture_output=True, text=True)
    assert done.returncode == 2 and "bash" in done.stderr and "Traceback" not in done.stderr


def test_commands_dag_ids_and_run_ids_complete_from_the_api(url: str) -> None:
    with ApiClient(url) as client:
        client.submit_dag(GOOD)
        run_id = client.trigger("hello").run_id
    assert complete("flowforge tri", url) == ["trigger"]
    assert complete("flowforge trigger h", url) == ["hello"]
    assert complete("flowforge trigger x", url) == []
    assert complete(f"flowforge run {run_id[:6]}", url) == [run_id]
    assert "hello" in complete("flowforge pause ", url, shell="fish")


def test_a_server_that_does_not_answer_offers_nothing_and_does_not_hang() -> None:
    # It accepts the connection (the kernel does) but never answers: the ask gives up after 0.3 s.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        assert complete("flowforge trigger ", f"http://127.0.0.1:{port}") == []
    assert complete("flowforge trigger ", "http://127.0.0.1:9") == []  # nothing listens
