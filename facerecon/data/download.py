"""Resumable, verified download of one file from a URL the user supplies.

FaceScape links are per licence (often signed URLs or links that need a token
or a cookie), so this module:

- resumes an interrupted transfer from ``FILE.part`` with an HTTP Range
  request (a server that ignores Range and answers 200 restarts from zero);
- retries with exponential back-off on connection errors, truncated bodies,
  429 and 5xx answers (an attempt that grew ``FILE.part`` resets the count);
- takes a body for whole only when its end is known: the ``Content-Length`` of a
  200 answer or the total of a 206 answer's ``Content-Range`` is reached, or the
  expected ``size`` is. Without a length from the server (and without ``size``)
  a body that ended when the connection closed is only a lower bound, so it
  counts as complete only if it came chunked and ended with the terminating
  zero-length chunk (a connection lost mid-chunk is a truncated body, retried),
  or if the server confirms the length: a HEAD answer whose ``Content-Length``
  equals the bytes received, or a ``Range: bytes=N-`` probe (``N`` the bytes
  received) answered 416 (nothing past the end; a ``Content-Range: bytes */M``
  with it must say ``M = N``) or 206 with a ``Content-Range`` total of ``N``.
  A body that is neither is retried like a truncated one and finally refused.
  With ``sha256`` given, a body without a length is taken as is (no probe) and
  the hash decides: the server's word on the length is only as good as the
  server, and setting ``sha256`` is the only certain check that the file is whole
  (and the right one);
- verifies the size and SHA-256 when given (a mismatch deletes ``FILE.part``)
  and renames ``FILE.part`` to ``FILE`` only when complete and verified;
- skips the download when ``FILE`` already exists and verifies;
- takes a secret (token or cookie) ONLY from the environment variable named
  by ``token_env`` and sends it as a header (``Authorization: Bearer <token>``
  by default; any other header name carries the value as is), never to another
  origin after a redirect; the secret and URL query strings (which may carry
  signatures) never appear in progress lines, errors or files: URLs are shown
  as ``https://host/path?…``. A secret with a control character (a trailing
  CR/LF from a file, say) or a non-ASCII one, and a header name that is not an
  RFC 7230 token, are refused before any request, with a message that names the
  variable and the problem but shows no part of the value (nor the header name,
  in case it was given the secret by mistake); redirects go to http(s) URLs only.

Command line::

    python -m facerecon.data.download URL --out FILE [--sha256 HEX] [--size BYTES] \
        [--token-env VAR] [--header-name Authorization] [--retries 5]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from email.message import Message
from pathlib import Path

from facerecon import io

_CHUNK_BYTES = 1 << 20
_MAX_BACKOFF_S = 60.0


class DownloadError(io.InputError):
    """A download that cannot complete; the message is safe to log (no secret, no query)."""


class _Retryable(Exception):
    """A failure worth another attempt (connection trouble, truncated body, 429/5xx)."""


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path`` with any query shown as ``?…``; credentials and
    fragment dropped."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]  # drop user:password@
    return f"{parts.scheme}://{netloc}{parts.path}" + ("?…" if parts.query else "")


def _describe(exc: BaseException) -> str:
    """An exception's type and, for OS-level errors, its errno text: never ``str(exc)``,
    which for some URL errors quotes the whole URL."""
    cause = getattr(exc, "reason", exc)  # URLError wraps the socket error
    detail = cause.strerror if isinstance(cause, OSError) and cause.strerror else None
    return f"{type(cause).__name__}" + (f": {detail}" if detail else "")


def _check_url(url: str) -> None:
    """Refuse up front what urllib would reject with the whole URL in its message."""
    parts = urllib.parse.urlsplit(url)
    try:
        parts.port  # noqa: B018 (reading the port parses it: the check)
    except ValueError:
        raise DownloadError(f"{redact_url(url)}: invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname \
            or re.search(r"[\x00-\x20]", url):
        raise DownloadError(f"{redact_url(url)}: not an http(s) URL with a host and without "
                            f"spaces or control characters")


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


class _DropSecretOnRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) URLs only (a HEAD stays a HEAD), but never send the secret
    header to another origin."""

    def __init__(self, secret_header: str | None) -> None:
        self.secret_header = secret_header

    def redirect_request(self, req: urllib.request.Request, fp: object, code: int, msg: str,
                         headers: object, newurl: str) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme not in ("http", "https"):
            return None  # not followed: urllib raises HTTPError for the 3xx
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and req.get_method() == "HEAD":
            new.method = "HEAD"  # urllib would turn a redirected HEAD into a GET
        if new is not None and self.secret_header and _origin(newurl) != _origin(req.full_url):
            new.remove_header(self.secret_header.capitalize())
        return new


#: RFC 7230 ``token``: what a header name may be made of.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: C0 controls (CR, LF, tab, NUL, ...), DEL and the C1 controls.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _secret_problem(value: str) -> str | None:
    """What makes ``value`` unfit for a header, in words that show no part of it."""
    if _CONTROL_CHARS.search(value):
        at_end = not _CONTROL_CHARS.search(value.rstrip("".join(map(chr, range(0x20)))))
        return ("contains a control character (CR/LF/tab/DEL/...)"
                + (" at its end (a trailing newline from a file or echo?)" if at_end else ""))
    if not value.isascii():
        return "contains a non-ASCII character (tokens and cookies are ASCII)"
    return None


def secret_header(token_env: str | None, header_name: str) -> dict[str, str]:
    """The header carrying the secret from ``$token_env`` (empty without ``token_env``).

    Refuses a header name that is not an RFC 7230 token and a value with a control or
    non-ASCII character, naming the variable but never showing the value (http.client
    would quote it in its error) nor the name (in case it holds the secret by mistake).
    """
    if not token_env:
        return {}
    if not _HEADER_NAME.fullmatch(header_name):
        raise DownloadError("the header name for the secret (--header-name) is not an HTTP "
                            "token (RFC 7230: letters, digits and !#$%&'*+-.^_`|~ only, no "
                            "spaces, colons or control characters); not shown")
    value = os.environ.get(token_env, "")
    if not value:
        raise DownloadError(f"environment variable {token_env} (the download secret) is not set "
                            f"or empty")
    problem = _secret_problem(value)
    if problem:
        raise DownloadError(f"environment variable {token_env} (the download secret) {problem}; "
                            f"its value is not shown")
    if header_name.lower() == "authorization" and " " not in value:
        value = f"Bearer {value}"  # a bare token; 'Basic …' and the like are sent as is
    return {header_name: value}


def _verify(path: Path, size: int | None, sha256: str | None) -> str | None:
    """Why ``path`` fails the size / SHA-256 check, or None if it passes."""
    actual_bytes = path.stat().st_size
    if size is not None and actual_bytes != size:
        return f"size {actual_bytes:,} bytes, expected {size:,}"
    if sha256 is not None:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK_BYTES):
                digest.update(chunk)
        if digest.hexdigest() != sha256.lower():
            return f"SHA-256 {digest.hexdigest()}, expected {sha256.lower()}"
    return None


class _Progress:
    """A stderr line every ``every_s`` seconds or per 10 % of a known total."""

    def __init__(self, name: str, done_bytes: int, total_bytes: int | None,
                 every_s: float) -> None:
        self.name, self.total_bytes, self.every_s = name, total_bytes, every_s
        self.start_bytes = self.done_bytes = self.shown_bytes = done_bytes
        self.start_s = self.shown_s = time.monotonic()

    def _tenth(self, n_bytes: int) -> int:
        return n_bytes * 10 // self.total_bytes if self.total_bytes else 0

    def update(self, n_bytes: int, *, final: bool = False) -> None:
        """Count ``n_bytes`` more; print when due (``final``: whatever is not shown yet)."""
        self.done_bytes += n_bytes
        now = time.monotonic()
        due = (now - self.shown_s >= self.every_s
               or self._tenth(self.done_bytes) > self._tenth(self.shown_bytes))
        if not (due or (final and self.done_bytes != self.shown_bytes)):
            return
        self.shown_s, self.shown_bytes = now, self.done_bytes
        rate = (self.done_bytes - self.start_bytes) / max(now - self.start_s, 1e-9)
        share = (f" of {self.total_bytes / 1e6:,.1f} MB "
                 f"({100 * self.done_bytes / self.total_bytes:.0f}%)" if self.total_bytes else "")
        print(f"{self.name}: {self.done_bytes / 1e6:,.1f} MB{share}, {rate / 1e6:.2f} MB/s",
              file=sys.stderr, flush=True)


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """(start, total) of a ``Content-Range: bytes a-b/total`` header (total None if '*')."""
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", (value or "").strip())
    if not match:
        return None
    return int(match[1]), None if match[2] == "*" else int(match[2])


def _length(value: str | None) -> int | None:
    """A ``Content-Length`` header's value as a number (None if absent or malformed)."""
    value = (value or "").strip()
    return int(value) if value.isdigit() else None


def _probe(opener: urllib.request.OpenerDirector, request: urllib.request.Request,
           timeout_s: float) -> tuple[int, Message] | None:
    """Status and headers of the answer to ``request`` (its body left unread), or None when
    no answer came."""
    try:
        with opener.open(request, timeout=timeout_s) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, exc.headers
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError):
        return None


def _confirm_length(opener: urllib.request.OpenerDirector, url: str, headers: dict[str, str],
                    n_bytes: int, timeout_s: float) -> None:
    """Return if the server confirms that the file is ``n_bytes`` long: a HEAD answer with
    that Content-Length, else a ``Range: bytes=n_bytes-`` probe answered 416 (with no
    ``Content-Range`` or ``bytes */n_bytes``) or 206 with a ``Content-Range`` total of
    ``n_bytes``; raise _Retryable otherwise (saying so when the server tells of more bytes)."""
    def truncated(total_bytes: int) -> _Retryable:
        return _Retryable(f"connection closed after {n_bytes:,} of {total_bytes:,} bytes "
                          f"(no length sent with the body)")

    head = _probe(opener, urllib.request.Request(url, headers=headers, method="HEAD"),
                  timeout_s)
    head_bytes = _length(head[1].get("Content-Length")) if head and head[0] == 200 else None
    if head_bytes == n_bytes:
        return
    if head_bytes is not None and head_bytes > n_bytes:
        raise truncated(head_bytes)
    probe = _probe(opener, urllib.request.Request(
        url, headers=dict(headers, Range=f"bytes={n_bytes}-")), timeout_s)
    if probe is not None:
        status, probe_headers = probe
        range_value = (probe_headers.get("Content-Range") or "").strip()
        if status == 416 and (not range_value or range_value == f"bytes */{n_bytes}"):
            return  # nothing past byte n_bytes
        content_range = _content_range(range_value)
        total_bytes = content_range[1] if status == 206 and content_range else None
        if total_bytes == n_bytes:
            return
        if total_bytes is not None and total_bytes > n_bytes:
            raise truncated(total_bytes)
    raise _Retryable(f"the server sent {n_bytes:,} bytes without a length and did not confirm "
                     f"it (neither a HEAD Content-Length nor a Range answer), so the length "
                     f"could not be confirmed; setting sha256 is the only certain check")


def _attempt(opener: urllib.request.OpenerDirector, url: str, headers: dict[str, str],
             part: Path, size: int | None, sha256_given: bool, timeout_s: float,
             progress_every_s: float) -> None:
    """One request, appending to ``part`` from where it ends (or rewriting it from zero);
    returns only when ``part`` is complete by the rule in the module docstring.

    Raises _Retryable for transient trouble (a short or unconfirmed body included) and
    DownloadError for the rest.
    """
    offset = part.stat().st_size if part.exists() else 0
    request_headers = dict(headers, **({"Range": f"bytes={offset}-"} if offset else {}))
    try:
        response = opener.open(urllib.request.Request(url, headers=request_headers),
                               timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:  # nothing left past the part: start over
            part.unlink()
            raise _Retryable(f"HTTP 416 for a range from byte {offset:,}") from None
        if exc.code == 429 or exc.code >= 500:
            raise _Retryable(f"HTTP {exc.code} {exc.reason}") from None
        if 300 <= exc.code < 400:  # urllib's reason for a redirect it refused quotes the URL
            raise DownloadError(f"{redact_url(url)}: HTTP {exc.code}, a redirect not followed "
                                f"(to a URL other than http(s), or a loop)") from None
        hint = " (check the secret or whether the link expired)" if exc.code in (401, 403) else ""
        raise DownloadError(f"{redact_url(url)}: HTTP {exc.code} {exc.reason}{hint}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Retryable(_describe(exc)) from None
    except ValueError as exc:  # e.g. http.client refusing a header: its message quotes the value
        raise DownloadError(f"{redact_url(url)}: the request could not be sent "
                            f"({type(exc).__name__}: a character in the URL or a header that "
                            f"HTTP cannot carry)") from None

    with response:
        # a chunked body ends with its terminator; http.client ignores a Content-Length with it
        chunked = bool(getattr(response, "chunked", False))
        length_bytes = None if chunked else _length(response.headers.get("Content-Length"))
        content_range = _content_range(response.headers.get("Content-Range"))
        if response.status == 206:
            if not content_range or content_range[0] != offset:
                part.unlink(missing_ok=True)
                raise _Retryable(f"the server sent a range other than from byte {offset:,}")
            total_bytes = content_range[1]
        else:  # 200: the whole body, whether or not a range was asked for
            if offset:
                print(f"{part.name}: the server ignored the range request; restarting from zero",
                      file=sys.stderr, flush=True)
            offset = 0
            total_bytes = length_bytes
        if size is not None and total_bytes is not None and total_bytes != size:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{redact_url(url)}: the server offers {total_bytes:,} bytes, "
                                f"expected {size:,}")
        progress = _Progress(part.name.removesuffix(".part"), offset, total_bytes or size,
                             progress_every_s)
        received = 0
        try:
            with open(part, "ab" if offset else "wb") as out:
                while chunk := response.read(_CHUNK_BYTES):
                    out.write(chunk)
                    received += len(chunk)
                    progress.update(len(chunk))
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, (ConnectionError, TimeoutError)):
                raise  # a local write error, not the network
            raise _Retryable(f"connection lost after {received:,} bytes "
                             f"({type(exc).__name__})") from None
        progress.update(0, final=True)
    if length_bytes is not None and received < length_bytes:
        raise _Retryable(f"connection closed after {received:,} of {length_bytes:,} bytes")
    done_bytes = offset + received
    if total_bytes is not None:
        if done_bytes > total_bytes:
            part.unlink()
            raise _Retryable(f"{done_bytes:,} bytes, more than the {total_bytes:,} the server "
                             f"announced; starting over")
        if done_bytes < total_bytes:  # a 206 that stopped short of the end
            raise _Retryable(f"the server sent up to byte {done_bytes:,} of {total_bytes:,}")
    elif size is not None:
        if done_bytes < size:
            raise _Retryable(f"connection closed after {done_bytes:,} of {size:,} bytes "
                             f"(no length sent with the body)")
    elif not (chunked and response.status == 200) and not sha256_given:
        # the connection closed without a length: a lower bound unless the server confirms
        # (a chunked 200 that read to its end had its terminator: http.client raises
        # IncompleteRead otherwise, retried above; a chunked 206 ends its range, not the file)
        _confirm_length(opener, url, headers, done_bytes, timeout_s)


def download(url: str, out: str | os.PathLike, *, sha256: str | None = None,
             size: int | None = None, token_env: str | None = None,
             header_name: str = "Authorization", retries: int = 5, backoff_s: float = 1.0,
             timeout_s: float = 60.0, progress_every_s: float = 5.0) -> Path:
    """Download ``url`` to ``out`` (resumable, verified, atomic); returns ``out``.

    An existing ``out`` that passes the given checks (any file, when neither ``size``
    nor ``sha256`` is given) is kept without a request.
    """
    out = Path(out)
    part = out.with_name(out.name + ".part")
    _check_url(url)
    if out.is_file():
        problem = _verify(out, size, sha256)
        if problem is None:
            print(f"{out}: present and verified, not downloading", file=sys.stderr, flush=True)
            return out
        print(f"{out}: present but {problem}; downloading again", file=sys.stderr, flush=True)
    headers = secret_header(token_env, header_name)
    opener = urllib.request.build_opener(_DropSecretOnRedirect(header_name if headers else None))
    out.parent.mkdir(parents=True, exist_ok=True)
    print(f"{out}: downloading {redact_url(url)}", file=sys.stderr, flush=True)

    failures, high_water_bytes = 0, part.stat().st_size if part.exists() else 0
    while True:
        if size is not None and part.exists() and part.stat().st_size >= size:
            if part.stat().st_size > size:
                part.unlink()
            else:
                break  # complete from an earlier run
        try:
            _attempt(opener, url, headers, part, size, sha256 is not None, timeout_s,
                     progress_every_s)
            break
        except _Retryable as exc:
            part_bytes = part.stat().st_size if part.exists() else 0
            # a .part that grew past its best resets the count (a server that cuts every
            # transfer still finishes); one that restarts and cuts again does not
            failures = 1 if part_bytes > high_water_bytes else failures + 1
            high_water_bytes = max(high_water_bytes, part_bytes)
            if failures > retries:
                raise DownloadError(f"{redact_url(url)}: giving up after {failures} failed "
                                    f"attempt(s): {exc}") from None
            wait_s = min(backoff_s * 2 ** (failures - 1), _MAX_BACKOFF_S)
            print(f"{out.name}: {exc}; retrying in {wait_s:.1f} s", file=sys.stderr, flush=True)
            time.sleep(wait_s)

    problem = _verify(part, size, sha256)
    if problem is not None:
        part.unlink()
        raise DownloadError(f"{redact_url(url)}: downloaded file has {problem}; "
                            f"deleted {part.name}")
    with open(part, "rb") as f:
        os.fsync(f.fileno())
    os.replace(part, out)
    print(f"{out}: complete, {out.stat().st_size:,} bytes", file=sys.stderr, flush=True)
    return out


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m facerecon.data.download",
        description="Resumable, verified download; a secret comes only from the environment.")
    parser.add_argument("url", help="URL to fetch (its query string is never printed)")
    parser.add_argument("--out", type=Path, required=True, help="file to write")
    parser.add_argument("--sha256", help="expected SHA-256 (hex)")
    parser.add_argument("--size", type=int, help="expected size in bytes")
    parser.add_argument("--token-env", metavar="VAR",
                        help="environment variable holding the token or cookie")
    parser.add_argument("--header-name", default="Authorization",
                        help="header that carries the secret (default Authorization: Bearer)")
    parser.add_argument("--retries", type=int, default=5, help="retries on transient failures")
    args = parser.parse_args(argv)
    if args.sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", args.sha256):
        parser.error("--sha256 must be 64 hexadecimal digits")
    if args.size is not None and args.size < 0:
        parser.error("--size must be non-negative")
    if args.retries < 0:
        parser.error("--retries must be non-negative")
    return args


def main(argv: list[str] | None = None) -> None:
    """Download one file."""
    args = _parse_args(argv)
    download(args.url, args.out, sha256=args.sha256, size=args.size, token_env=args.token_env,
             header_name=args.header_name, retries=args.retries)


if __name__ == "__main__":
    io.run_cli(main)
