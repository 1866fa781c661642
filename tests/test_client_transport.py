"""The API client's HTTP (`flowforge.client.transport`) and its answers (`flowforge.client.answers`),
against real servers on real sockets: kept-alive connections, a server closing one, proxies from the
environment, TLS verified against the certificate store, and answers of a shape the client does not know.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flowforge.api import models
from flowforge.client import ApiClient, ApiError, ApiUnreachable
from tests.harness import clean_env


class Recorder(ThreadingHTTPServer):
    """An HTTP/1.1 server answering every request with `answer`, recording request lines and connections."""

    daemon_threads = True

    def __init__(self, answer: dict[str, Any], close_after: bool = False) -> None:
        self.answer, self.close_after = answer, close_after
        self.lines: list[str] = []
        self.connections = 0
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Recorder

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_GET(self) -> None:
        self.server.lines.append(self.requestline)
        body = json.dumps(self.server.answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.server.close_after:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def recording(
    answer: dict[str, Any], *, close_after: bool = False, tls: ssl.SSLContext | None = None
) -> Iterator[Recorder]:
    server = Recorder(answer, close_after)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


HEALTH = {"status": "ok"}


def test_one_connection_serves_many_requests() -> None:
    with recording(HEALTH) as server, ApiClient(server.url) as client:
        for _ in range(5):
            assert client.health().status == "ok"
        assert server.connections == 1 and len(server.lines) == 5


def test_a_connection_the_server_closed_is_reopened_without_an_error() -> None:
    with recording(HEALTH, close_after=True) as server, ApiClient(server.url) as client:
        for _ in range(3):
            assert client.health().status == "ok"
        assert server.connections == 3


def test_the_proxy_of_the_environment_is_used_and_no_proxy_is_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with recording(HEALTH) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with ApiClient("http://flowforge.invalid:8080/base") as client:
            assert client.health().status == "ok"
        assert proxy.lines == ["GET http://flowforge.invalid:8080/base/health HTTP/1.1"]
        monkeypatch.setenv("NO_PROXY", "flowforge.invalid")
        with ApiClient("http://flowforge.invalid:8080", timeout=5) as client, pytest.raises(ApiUnreachable):
            client.health()
        assert len(proxy.lines) == 1


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def _client_health(url: str, cert_file: Path | None) -> subprocess.CompletedProcess[str]:
    # A process of its own: the certificate store is read from SSL_CERT_FILE as a user's would be.
    env = clean_env()
    env.pop("SSL_CERT_FILE", None)
    if cert_file is not None:
        env["SSL_CERT_FILE"] = str(cert_file)
    code = f"from flowforge.client import ApiClient; print(ApiClient({url!r}, timeout=5).health().status)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


def test_https_is_verified_against_the_certificate_store(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with recording(HEALTH, tls=tls) as server:
        url = server.url.replace("http://", "https://")
        trusted = _client_health(url, cert)
        assert trusted.returncode == 0 and trusted.stdout.strip() == "ok", trusted.stderr
        untrusted = _client_health(url, None)
        assert untrusted.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr


def test_an_answer_of_an_unknown_shape_is_an_api_error_not_a_crash() -> None:
    with recording({"unexpected": True}) as server, ApiClient(server.url) as client:
        status = client.status()
        with pytest.raises(ApiError, match=r"shape this client does not know.*'dags'"):
            _ = status.dags


def test_the_cli_says_so_when_the_server_answers_an_unknown_shape(tmp_path: Path) -> None:
    with recording({"unexpected": True}) as server:
        done = subprocess.run(
            [sys.executable, "-m", "flowforge", "--api-url", server.url, "status"],
            env=clean_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "shape this client does not know" in done.stderr and "Traceback" not in done.stderr


def test_no_answer_field_is_hidden_by_a_dict_method() -> None:
    # Answers are dicts read by attribute: a field named like a dict method would read as the method.
    hidden = {
        (name, field)
        for name in models.__all__
        if isinstance(model := getattr(models, name), type) and hasattr(model, "model_fields")
        for field in model.model_fields
        if hasattr(dict, field)
    }
    assert hidden == set()
