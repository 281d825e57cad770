"""Resumable, verified download of one file from a URL the user supplies.

FaceScape links are per licence (often signed URLs or links that need a token
or a cookie), so this module:

- resumes an interrupted transfer from ``FILE.part`` with an HTTP Range
  request (a server that ignores Range and answers 200 restarts from zero);
- retries with exponential back-off on connection errors, truncated bodies,
  429 and 5xx answers (an attempt that grew ``FILE.part`` resets the count);
- verifies the size and SHA-256 when given (a mismatch deletes ``FILE.part``)
  and renames ``FILE.part`` to ``FILE`` only when complete and verified;
- skips the download when ``FILE`` already exists and verifies;
- takes a secret (token or cookie) ONLY from the environment variable named
  by ``token_env`` and sends it as a header (``Authorization: Bearer <token>``
  by default; any other header name carries the value as is), never to another
  origin after a redirect; the secret and URL query strings (which may carry
  signatures) never appear in progress lines, errors or files: URLs are shown
  as ``https://host/path?…``.

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
    """Follow redirects, but never send the secret header to another origin."""

    def __init__(self, secret_header: str | None) -> None:
        self.secret_header = secret_header

    def redirect_request(self, req: urllib.request.Request, fp: object, code: int, msg: str,
                         headers: object, newurl: str) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and self.secret_header and _origin(newurl) != _origin(req.full_url):
            new.remove_header(self.secret_header.capitalize())
        return new


def secret_header(token_env: str | None, header_name: str) -> dict[str, str]:
    """The header carrying the secret from ``$token_env`` (empty without ``token_env``)."""
    if not token_env:
        return {}
    value = os.environ.get(token_env, "")
    if not value:
        raise DownloadError(f"environment variable {token_env} (the download secret) is not set "
                            f"or empty")
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


def _attempt(opener: urllib.request.OpenerDirector, url: str, headers: dict[str, str],
             part: Path, size: int | None, timeout_s: float, progress_every_s: float) -> None:
    """One request, appending to ``part`` from where it ends (or rewriting it from zero).

    Raises _Retryable for transient trouble and DownloadError for the rest.
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
        hint = " (check the secret or whether the link expired)" if exc.code in (401, 403) else ""
        raise DownloadError(f"{redact_url(url)}: HTTP {exc.code} {exc.reason}{hint}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Retryable(_describe(exc)) from None

    with response:
        length = response.headers.get("Content-Length")
        length_bytes = int(length) if length and length.isdigit() else None
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
            _attempt(opener, url, headers, part, size, timeout_s, progress_every_s)
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
