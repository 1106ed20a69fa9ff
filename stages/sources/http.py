"""Robust HTTP downloads: resumable, retried, checksum-verified, atomically renamed.

Public archives (TCIA's NBIA API in particular) drop connections mid-body, answer 5xx/429 under
load and time out; a multi-gigabyte collection download must survive all of that and a crash of
our own process. So every body goes to ``<dest>.part`` first, a ``.part`` left behind is resumed
with an HTTP ``Range`` request, and ``dest`` only ever appears (by ``os.replace``) once the body
is complete and verified. A file at ``dest`` is therefore always a complete download.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable
from urllib.parse import urlparse

import requests

# Bytes of an unfinished read chunk are lost when a connection drops, so keep chunks modest.
CHUNK = 1 << 16

# Looked up at call time, so tests can monkeypatch ``stages.sources.http.sleep`` to skip waits.
sleep: Callable[[float], None] = time.sleep


class DownloadError(RuntimeError):
    """A download that failed for good; the message names the URL (or series) and the reason."""


class _Retry(Exception):
    """An attempt failed in a way that another attempt may fix (5xx, 429, timeout, truncation...)."""


def is_url(text: str) -> bool:
    """True for an http(s) URL with a host; local paths (also Windows ones) are not URLs."""
    try:
        parts = urlparse(str(text))
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def digest_stream(stream: BinaryIO, sink: BinaryIO | None = None) -> tuple[int, str, str]:
    """(size, sha256, md5) of a binary stream in one chunked pass, copying it to ``sink`` if given."""
    sha, md5, size = hashlib.sha256(), hashlib.md5(), 0
    while chunk := stream.read(CHUNK):
        sha.update(chunk)
        md5.update(chunk)
        size += len(chunk)
        if sink is not None:
            sink.write(chunk)
    return size, sha.hexdigest(), md5.hexdigest()


def _digests(path: Path) -> tuple[int, str, str]:
    """(size, sha256, md5) of a file."""
    with open(path, "rb") as stream:
        return digest_stream(stream)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks (files may be larger than memory)."""
    return _digests(Path(path))[1]


def md5_file(path: str | Path) -> str:
    """Hex MD5 of a file, read in chunks (NBIA publishes MD5s, so we need them too)."""
    return _digests(Path(path))[2]


def _mismatch(path: Path, sha256: str | None, md5: str | None, size: int | None) -> tuple[str | None, dict]:
    """(reason or None, info dict) comparing a file with the expected size and checksums."""
    got_size, got_sha, got_md5 = _digests(path)
    info = {"path": path, "bytes": got_size, "sha256": got_sha, "md5": got_md5}
    if size is not None and got_size != int(size):
        return f"size mismatch: expected {int(size)} bytes, got {got_size}", info
    if sha256 is not None and got_sha != sha256.lower():
        return f"sha256 mismatch: expected {sha256.lower()}, got {got_sha}", info
    if md5 is not None and got_md5 != md5.lower():
        return f"md5 mismatch: expected {md5.lower()}, got {got_md5}", info
    return None, info


def _check_status(response: requests.Response, what: str) -> None:
    """Raise _Retry for transient statuses, DownloadError for the other client errors."""
    code = response.status_code
    if code == 429 or code >= 500:
        raise _Retry(f"HTTP {code}")
    if code >= 400:
        raise DownloadError(f"{what}: HTTP {code} {response.reason or ''}".rstrip())


def _with_retries(what: str, attempt: Callable[[], Any], retries: int, backoff: float) -> Any:
    """Run ``attempt`` up to ``retries + 1`` times with exponential backoff between tries."""
    reason = "no attempt made"
    for number in range(retries + 1):
        if number:
            sleep(backoff * 2 ** (number - 1))
        try:
            return attempt()
        except _Retry as error:
            reason = str(error)
        except requests.Timeout as error:
            reason = f"timeout ({error})"
        except requests.RequestException as error:
            reason = f"connection error ({type(error).__name__}: {error})"
    raise DownloadError(f"{what}: failed after {retries + 1} attempts; last error: {reason}")


def fetch(url: str, dest: str | Path, *, sha256: str | None = None, md5: str | None = None,
          size: int | None = None, retries: int = 4, backoff: float = 0.5, timeout: float = 60.0,
          session: requests.Session | None = None, params: dict | None = None,
          resume: bool = True) -> dict[str, Any]:
    """Download ``url`` to ``dest``; return ``{"path", "bytes", "sha256", "md5"}``.

    ``retries`` counts the extra attempts after the first. An existing ``dest`` that matches the
    given size/checksums (or any existing ``dest`` when none is given) is returned without a
    request. A mismatching download is discarded and counts as a failed attempt.

    ``resume=False`` is for bodies generated per request (NBIA's zips): their bytes differ between
    requests, so a ``.part`` is thrown away and every attempt starts at byte 0 without a Range
    header. Without Content-Length (a streamed, chunked body) a cut-off body is still caught: the
    HTTP layer reports the missing final chunk, and the caller's verification the rest.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    what = f"{url}" + (f" {params}" if params else "")
    if dest.exists():
        reason, info = _mismatch(dest, sha256, md5, size)
        if reason is None:
            return info
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    http = session or requests.Session()

    def attempt() -> dict[str, Any]:
        if not resume:
            part.unlink(missing_ok=True)
        offset = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with http.get(url, params=params, headers=headers, stream=True, timeout=timeout) as response:
            if response.status_code == 416 and offset:
                part.unlink()  # our .part is longer than the file (changed upstream?): start over
                raise _Retry(f"HTTP 416 for a resume from byte {offset}")
            _check_status(response, what)
            resumed = bool(offset) and response.status_code == 206 and \
                response.headers.get("Content-Range", "").startswith(f"bytes {offset}-")
            if not resumed:
                offset = 0  # 200 (Range ignored) or an unexpected range: restart from zero
            length = response.headers.get("Content-Length")
            expected = offset + int(length) if length and length.isdigit() else None
            received = offset
            try:
                with open(part, "ab" if resumed else "wb") as stream:
                    for chunk in response.iter_content(CHUNK):
                        stream.write(chunk)
                        received += len(chunk)
            except requests.RequestException as error:  # dropped or timed-out mid-body
                if expected is not None and received < expected:
                    raise _Retry(f"truncated body: got {received} of {expected} bytes ({type(error).__name__})")
                raise _Retry(f"connection dropped after {received} bytes ({type(error).__name__}: {error})")
        if expected is not None and received < expected:
            raise _Retry(f"truncated body: got {received} of {expected} bytes")
        reason, info = _mismatch(part, sha256, md5, size)
        if reason is not None:
            part.unlink()
            raise _Retry(reason)
        os.replace(part, dest)
        info["path"] = dest
        return info

    try:
        return _with_retries(what, attempt, retries, backoff)
    finally:
        if session is None:
            http.close()


def get_json(url: str, *, params: dict | None = None, retries: int = 4, backoff: float = 0.5,
             timeout: float = 60.0, session: requests.Session | None = None) -> Any:
    """GET a JSON document with :func:`fetch`'s retry policy; an empty body is ``[]`` (NBIA's "no results")."""
    what = f"{url}" + (f" {params}" if params else "")
    http = session or requests.Session()

    def attempt() -> Any:
        with http.get(url, params=params, timeout=timeout) as response:
            _check_status(response, what)
            body = response.content
        if not body.strip():
            return []
        try:
            return json.loads(body)
        except ValueError as error:  # a cut-off body is the usual cause: try again
            raise _Retry(f"invalid JSON ({error})") from None

    try:
        return _with_retries(what, attempt, retries, backoff)
    finally:
        if session is None:
            http.close()
