"""Resumable, verified downloads (facerecon.data.download) against a real local HTTP server.

The server (127.0.0.1, a free port) serves the FaceScape-style archive of the
shared synthetic scans. It honours Range, and can be told to cut the connection
after K bytes of its first answer, to require a bearer token, to answer 500
once, to ignore Range, or to redirect elsewhere; it records every request.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from facerecon import io
from facerecon.data import download as dl

TOKEN = "tok-3f9a1c-SECRET"
SIGNATURE = "sig-77e2-SECRET"


@dataclass
class Behaviour:
    """What the server does; changed by the tests while it runs."""

    body: bytes = b""
    cut_after_bytes: int | None = None  # first answer only
    token: str | None = None
    fail_500_times: int = 0
    honour_range: bool = True
    redirect_to: str | None = None
    requests: list[dict[str, str | None]] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        b = self.server.behaviour
        b.requests.append({"path": self.path, "range": self.headers.get("Range"),
                           "authorization": self.headers.get("Authorization")})
        if b.token is not None and self.headers.get("Authorization") != f"Bearer {b.token}":
            return self.reply(401)
        if b.fail_500_times:
            b.fail_500_times -= 1
            return self.reply(500)
        if b.redirect_to:
            self.send_response(302)
            self.send_header("Location", b.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        start = 0
        asked = self.headers.get("Range")
        if asked and b.honour_range:
            start = int(asked.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(b.body) - 1}/{len(b.body)}")
        else:
            self.send_response(200)
        payload = b.body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if b.cut_after_bytes is not None:
            payload, b.cut_after_bytes = payload[:b.cut_after_bytes], None
            self.close_connection = True
        self.wfile.write(payload)
        return None

    def reply(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: the tests read ``behaviour.requests`` instead."""


class Server(ThreadingHTTPServer):
    daemon_threads = True
    behaviour: Behaviour

    def handle_error(self, request: object, client_address: object) -> None:
        """Quiet: clients that hang up early (refused sizes) are part of the tests."""


@pytest.fixture(scope="module")
def body(facescape_zip: Path) -> bytes:
    return facescape_zip.read_bytes()


def start_server() -> Server:
    server = Server(("127.0.0.1", 0), Handler)
    server.behaviour = Behaviour()
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.fixture
def server(body: bytes) -> Iterator[Server]:
    server = start_server()
    server.behaviour.body = body
    yield server
    server.shutdown()
    server.server_close()


def url_of(server: Server, query: str = "") -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/facescape_trainset_001_100.zip{query}"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_redact_url() -> None:
    assert dl.redact_url("https://user:pw@host.org:8443/a/b.zip?X-Amz-Signature=abc#frag") \
        == "https://host.org:8443/a/b.zip?…"
    assert dl.redact_url("http://host/file.zip") == "http://host/file.zip"


@pytest.mark.parametrize("url", ["ftp://host/a.zip?sig=SECRET", "http://host:port/a?sig=SECRET",
                                 "https://host/a b?sig=SECRET", "/local/a.zip?sig=SECRET"])
def test_bad_urls_are_refused_without_showing_the_query(url: str, tmp_path: Path) -> None:
    with pytest.raises(dl.DownloadError) as error:
        dl.download(url, tmp_path / "a.zip")
    assert "SECRET" not in str(error.value) and "?…" in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_cut_transfer_resumes_from_the_part_file(server: Server, body: bytes,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "archive.zip"
    cut = len(body) // 3
    server.behaviour.cut_after_bytes = cut
    with pytest.raises(dl.DownloadError, match="connection closed after"):
        dl.download(url_of(server), out, sha256=sha256_of(body), retries=0)
    part = tmp_path / "archive.zip.part"
    assert not out.exists() and part.stat().st_size == cut
    dl.download(url_of(server), out, sha256=sha256_of(body), size=len(body), retries=0)
    assert [r["range"] for r in server.behaviour.requests] == [None, f"bytes={cut}-"]
    assert out.read_bytes() == body and not part.exists()
    # present and verified: no request at all
    dl.download(url_of(server), out, sha256=sha256_of(body), size=len(body))
    assert len(server.behaviour.requests) == 2


def test_cut_and_500_are_retried_within_one_call(server: Server, body: bytes,
                                                 tmp_path: Path) -> None:
    server.behaviour.cut_after_bytes = 1_000_000
    server.behaviour.fail_500_times = 1
    out = dl.download(url_of(server), tmp_path / "a.zip", sha256=sha256_of(body), backoff_s=0.01)
    assert out.read_bytes() == body
    assert [r["range"] for r in server.behaviour.requests] == [None, None, "bytes=1000000-"]


def test_server_ignoring_range_restarts_from_zero(server: Server, body: bytes,
                                                  tmp_path: Path,
                                                  capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a.zip"
    Path(f"{out}.part").write_bytes(b"stale bytes from another run")
    server.behaviour.honour_range = False
    dl.download(url_of(server), out, size=len(body))
    assert out.read_bytes() == body
    assert server.behaviour.requests[0]["range"] == "bytes=28-"
    assert "ignored the range request" in capfd.readouterr().err


def test_wrong_checksum_or_size_is_refused(server: Server, body: bytes, tmp_path: Path) -> None:
    out = tmp_path / "a.zip"
    with pytest.raises(dl.DownloadError, match="SHA-256 .* expected 0{64}"):
        dl.download(url_of(server), out, sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(dl.DownloadError, match=f"offers {len(body):,} bytes, expected 12"):
        dl.download(url_of(server), out, size=12)
    assert list(tmp_path.iterdir()) == []


def test_persistent_500_gives_up(server: Server, tmp_path: Path) -> None:
    server.behaviour.fail_500_times = 10
    with pytest.raises(dl.DownloadError, match=r"giving up after 3 failed attempt\(s\): HTTP 500"):
        dl.download(url_of(server), tmp_path / "a.zip", retries=2, backoff_s=0.01)
    assert len(server.behaviour.requests) == 3


def test_token_is_sent_but_never_shown(server: Server, body: bytes, tmp_path: Path) -> None:
    """Through the command line, stdout and stderr going to a log file as under Snakemake."""
    server.behaviour.token = TOKEN
    server.behaviour.cut_after_bytes = 500_000  # progress and retry lines get written too
    out, log = tmp_path / "a.zip", tmp_path / "download.log"
    env = dict(os.environ, FACESCAPE_TOKEN=TOKEN)
    command = [sys.executable, "-m", "facerecon.data.download", url_of(server, f"?sig={SIGNATURE}"),
               "--out", str(out), "--sha256", sha256_of(body), "--token-env", "FACESCAPE_TOKEN"]
    with open(log, "w") as stream:
        done = subprocess.run(command, env=env, stdout=stream, stderr=stream, timeout=60)
    text = log.read_text()
    assert done.returncode == 0, text
    assert out.read_bytes() == body
    assert all(r["authorization"] == f"Bearer {TOKEN}" for r in server.behaviour.requests)
    assert server.behaviour.requests[-1]["range"] == "bytes=500000-"
    assert TOKEN not in text and SIGNATURE not in text and "sig=" not in text
    assert ".zip?…" in text and "MB" in text
    assert not any(TOKEN.encode() in p.read_bytes() for p in tmp_path.iterdir())

    # wrong token: a clear error, exit code 2, still nothing secret shown
    out.unlink()
    done = subprocess.run(command, env=dict(env, FACESCAPE_TOKEN="wrong-SECRET"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "HTTP 401" in done.stderr and "check the secret" in done.stderr
    assert "wrong-SECRET" not in done.stderr + done.stdout and SIGNATURE not in done.stderr


def test_missing_token_variable_is_named(server: Server, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("NO_SUCH_TOKEN_VAR", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        io.run_cli(dl.main, [url_of(server), "--out", str(tmp_path / "a.zip"),
                             "--token-env", "NO_SUCH_TOKEN_VAR"])
    assert exit_info.value.code == 2
    assert "NO_SUCH_TOKEN_VAR" in capsys.readouterr().err
    assert server.behaviour.requests == []


def test_token_is_not_forwarded_to_another_origin(server: Server, body: bytes, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A redirect to another host/port (e.g. a signed storage URL) loses the secret."""
    storage = start_server()
    try:
        storage.behaviour.body = body
        server.behaviour.redirect_to = url_of(storage, "?X-Amz-Signature=abc")
        monkeypatch.setenv("FACESCAPE_TOKEN", TOKEN)
        dl.download(url_of(server), tmp_path / "a.zip", token_env="FACESCAPE_TOKEN")
        assert (tmp_path / "a.zip").read_bytes() == body
        assert server.behaviour.requests[0]["authorization"] == f"Bearer {TOKEN}"
        assert storage.behaviour.requests[0]["authorization"] is None
    finally:
        storage.shutdown()
        storage.server_close()
