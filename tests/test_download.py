"""Resumable, verified downloads (facerecon.data.download) against a real local HTTP server.

The server (127.0.0.1, a free port) serves the FaceScape-style archive of the
shared synthetic scans. It honours Range (416 past the end), and can be told to
cut the connection after K bytes of its first answer, to require a bearer token,
to answer 500 once, to ignore Range, to redirect elsewhere, to frame bodies by
Content-Length, by closing the connection (no length) or in chunks, and to
leave the length out of HEAD answers; it records every request.
"""

from __future__ import annotations

import hashlib
import os
import re
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
    framing: str = "length"  # or "close" (no Content-Length, body ends at close), "chunked"
    head_length: bool = True  # HEAD answers carry the Content-Length
    past_end_status: int = 416  # or 206: a Range from the end answered "bytes N-(N-1)/N"
    requests: list[dict[str, str | None]] = field(default_factory=list)


CHUNK_BYTES = 65_536


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def record(self) -> Behaviour:
        b = self.server.behaviour
        b.requests.append({"method": self.command, "path": self.path,
                           "range": self.headers.get("Range"),
                           "authorization": self.headers.get("Authorization")})
        return b

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        b = self.record()
        if b.token is not None and self.headers.get("Authorization") != f"Bearer {b.token}":
            return self.reply(401)
        self.send_response(200)
        if b.head_length:
            self.send_header("Content-Length", str(len(b.body)))
        self.end_headers()
        return None

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        b = self.record()
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
            if start >= len(b.body) and b.past_end_status == 416:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(b.body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(b.body) - 1}/{len(b.body)}")
        else:
            self.send_response(200)
        payload = b.body[start:]
        cut, b.cut_after_bytes = b.cut_after_bytes, None
        if b.framing == "length":
            self.send_header("Content-Length", str(len(payload)))
        elif b.framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = cut is not None or b.framing == "close"
        if b.framing != "chunked":
            self.wfile.write(payload[:cut])
            return None
        sent = 0
        for piece in (payload[i:i + CHUNK_BYTES] for i in range(0, len(payload), CHUNK_BYTES)):
            if cut is not None and sent + len(piece) > cut:  # cut inside this chunk
                self.wfile.write(b"%x\r\n" % len(piece) + piece[:cut - sent])
                return None
            self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            sent += len(piece)
        if cut is None:  # cut at the very end: all the data, but no terminating chunk
            self.wfile.write(b"0\r\n\r\n")
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


# --- secrets that cannot go into a header are refused before any request, unseen ------------

def secret_fragments(secret: str) -> set[str]:
    """The secret, its pieces between control characters, and the halves of the longer ones."""
    pieces = [piece for piece in re.split(r"[\x00-\x1f\x7f]", secret) if piece]
    halves = {half for piece in pieces if len(piece) >= 8
              for half in (piece[:len(piece) // 2], piece[len(piece) // 2:])}
    return {secret, *pieces, *halves}


@pytest.mark.parametrize("secret", ["s3cret-TOKEN-value\r", "abc\ndef-SECRET"])
def test_secret_with_a_control_character_is_refused_unseen(server: Server, tmp_path: Path,
                                                           secret: str) -> None:
    """Through the command line, output to a log file as under Snakemake: one clear line."""
    out, log = tmp_path / "a.zip", tmp_path / "download.log"
    command = [sys.executable, "-m", "facerecon.data.download", url_of(server), "--out",
               str(out), "--token-env", "FACESCAPE_DL_KEY"]
    with open(log, "w") as stream:
        done = subprocess.run(command, env=dict(os.environ, FACESCAPE_DL_KEY=secret),
                              stdout=stream, stderr=stream, timeout=60)
    text = log.read_text()
    assert done.returncode == 2, text
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    assert text.startswith("error: environment variable FACESCAPE_DL_KEY ")
    assert "contains a control character (CR/LF/" in text
    assert server.behaviour.requests == []
    assert not out.exists()
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert files == [log]
    for fragment in secret_fragments(secret):
        assert not any(fragment.encode() in path.read_bytes() for path in files), fragment


@pytest.mark.parametrize(("header_name", "value", "problem"), [
    ("Authorization", "tok-SECRET\t", "control character"),
    ("Authorization", "tok-\x7fSECRET", "control character"),
    ("Authorization", "tok-\x85SECRET", "control character"),
    ("Cookie", "session=tok-\u00e9SECRET", "non-ASCII"),
    ("X-Token: Bearer tok-SECRET", "tok-SECRET", "header name"),
    ("X Token", "tok-SECRET", "header name"),
    ("X-Token\r\n", "tok-SECRET", "header name"),
    ("", "tok-SECRET", "header name"),
])
def test_secret_header_refuses_what_http_cannot_carry(header_name: str, value: str, problem: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACESCAPE_DL_KEY", value)
    with pytest.raises(dl.DownloadError, match=problem) as error:
        dl.secret_header("FACESCAPE_DL_KEY", header_name)
    assert "SECRET" not in str(error.value)


def test_secret_header_passes_good_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACESCAPE_DL_KEY", "tok-123.abc_~+/=")
    assert dl.secret_header("FACESCAPE_DL_KEY", "Authorization") \
        == {"Authorization": "Bearer tok-123.abc_~+/="}
    monkeypatch.setenv("FACESCAPE_DL_KEY", "session=abc; other=1")
    assert dl.secret_header("FACESCAPE_DL_KEY", "Cookie") == {"Cookie": "session=abc; other=1"}


def test_values_http_client_refuses_are_described_by_type_only(server: Server,
                                                               tmp_path: Path) -> None:
    """http.client's own errors quote the header value or the request line."""
    with pytest.raises(dl.DownloadError, match="could not be sent") as error:
        dl.download(url_of(server).replace(".zip", "-\u00e9.zip") + f"?sig={SIGNATURE}",
                    tmp_path / "a.zip", retries=0)
    assert SIGNATURE not in str(error.value)  # (the path is shown, only the query is not)
    with pytest.raises(dl.DownloadError, match="could not be sent") as error:
        dl._attempt(dl.urllib.request.build_opener(), url_of(server),
                    {"X-Key": f"v\r\nX-Other: {TOKEN}"}, tmp_path / "b.zip.part", None, False,
                    10.0, 5.0)
    assert TOKEN not in str(error.value)
    assert server.behaviour.requests == []


@pytest.mark.parametrize("target", [f"file:///etc/hostname?sig={SIGNATURE}",
                                    f"ftp://127.0.0.1:9/a.zip?sig={SIGNATURE}"])
def test_redirect_to_a_non_http_url_is_refused_unseen(server: Server, tmp_path: Path,
                                                      target: str) -> None:
    server.behaviour.redirect_to = target
    with pytest.raises(dl.DownloadError, match="HTTP 302, a redirect not followed") as error:
        dl.download(url_of(server), tmp_path / "a.zip", retries=0)
    assert SIGNATURE not in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "a.zip").exists()


# --- a short download is never taken for a whole one -----------------------------------------

def methods(server: Server) -> list[str | None]:
    return [r["method"] for r in server.behaviour.requests]


def test_unconfirmed_body_without_length_is_refused(server: Server, body: bytes,
                                                    tmp_path: Path) -> None:
    """The connection closes after the whole body, but nothing says it is the whole body."""
    b = server.behaviour
    b.framing, b.head_length, b.honour_range = "close", False, False
    out = tmp_path / "a.zip"
    with pytest.raises(dl.DownloadError, match=r"giving up after 2 failed attempt\(s\): .*"
                       r"could not be confirmed; setting sha256 is the only certain check"):
        dl.download(url_of(server), out, retries=1, backoff_s=0.01)
    assert methods(server) == ["GET", "HEAD", "GET"] * 2  # body, HEAD, Range probe; twice
    assert server.behaviour.requests[2]["range"] == f"bytes={len(body)}-"
    assert not out.exists() and (tmp_path / "a.zip.part").read_bytes() == body  # kept to resume

    command = [sys.executable, "-m", "facerecon.data.download", url_of(server), "--out",
               str(out), "--retries", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith("error: ")
    assert "could not be confirmed" in done.stderr and not out.exists()


def test_body_without_length_confirmed_by_head(server: Server, body: bytes,
                                               tmp_path: Path) -> None:
    b = server.behaviour
    b.framing, b.head_length, b.honour_range = "close", True, False
    out = dl.download(url_of(server), tmp_path / "a.zip", retries=0)
    assert out.read_bytes() == body and methods(server) == ["GET", "HEAD"]


@pytest.mark.parametrize("past_end_status", [416, 206])
def test_body_without_length_confirmed_by_a_range_probe(server: Server, body: bytes,
                                                        tmp_path: Path,
                                                        past_end_status: int) -> None:
    """HEAD says nothing (as for a signed GET-only link); 'bytes=N-' finds nothing past N."""
    b = server.behaviour
    b.framing, b.head_length, b.past_end_status = "close", False, past_end_status
    out = dl.download(url_of(server), tmp_path / "a.zip", retries=0)
    assert out.read_bytes() == body and methods(server) == ["GET", "HEAD", "GET"]
    assert server.behaviour.requests[2]["range"] == f"bytes={len(body)}-"


@pytest.mark.parametrize(("size_given", "expected_methods"), [
    (False, ["GET", "HEAD", "GET", "GET"]),  # the Range probe finds more bytes: resumed
    (True, ["GET", "GET"]),  # short of the expected size: resumed at once
])
def test_short_body_without_length_is_resumed(server: Server, body: bytes, tmp_path: Path,
                                              size_given: bool,
                                              expected_methods: list[str]) -> None:
    cut = len(body) // 3
    b = server.behaviour
    b.framing, b.head_length, b.cut_after_bytes = "close", False, cut
    out = dl.download(url_of(server), tmp_path / "a.zip", size=len(body) if size_given else None,
                      backoff_s=0.01, retries=1)
    assert out.read_bytes() == body and methods(server) == expected_methods
    assert server.behaviour.requests[-1]["range"] == f"bytes={cut}-"


def test_chunked_body_with_its_terminator_is_complete(server: Server, body: bytes,
                                                      tmp_path: Path) -> None:
    b = server.behaviour
    b.framing, b.head_length, b.honour_range = "chunked", False, False
    out = dl.download(url_of(server), tmp_path / "a.zip", retries=0)
    assert out.read_bytes() == body and methods(server) == ["GET"]


@pytest.mark.parametrize("cut", ["mid-chunk", "before the terminator"])
def test_chunked_body_cut_short_is_not_complete(server: Server, body: bytes, tmp_path: Path,
                                                cut: str) -> None:
    b = server.behaviour
    b.framing, b.head_length = "chunked", False
    b.cut_after_bytes = len(body) // 2 + 7 if cut == "mid-chunk" else len(body)
    out, part = tmp_path / "a.zip", tmp_path / "a.zip.part"
    with pytest.raises(dl.DownloadError, match=r"connection lost after .*IncompleteRead"):
        dl.download(url_of(server), out, retries=0)
    kept = part.read_bytes()
    assert not out.exists() and len(kept) < len(body) and body.startswith(kept)
    dl.download(url_of(server), out, retries=0)  # resumed: a chunked 206 with its total
    assert out.read_bytes() == body and methods(server) == ["GET", "GET"]
    assert server.behaviour.requests[1]["range"] == f"bytes={len(kept)}-"


def test_sha256_takes_a_body_without_length_without_probes(server: Server, body: bytes,
                                                           tmp_path: Path) -> None:
    b = server.behaviour
    b.framing, b.head_length, b.honour_range = "close", False, False
    out = dl.download(url_of(server), tmp_path / "a.zip", sha256=sha256_of(body), retries=0)
    assert out.read_bytes() == body and methods(server) == ["GET"]
