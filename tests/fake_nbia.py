"""A fake NBIA REST server (and static files) on 127.0.0.1 for tests: it logs every request and
injects faults per endpoint and key from a counter-based plan.

Its zips behave as the real service's (CBIIT/NBIA-TCIA ``restAPI/v4/V4_getImage.java`` and
``V4_getImageWithMD5Hash.java``), so the tests are no more lenient than the service:
- streamed while built: HTTP/1.1 chunked, no Content-Length, Range ignored;
- entry times are the request's, so each download of a series differs in bytes;
- ``getImage`` writes a ``LICENSE`` entry first; without ``NewFileNames=Yes`` files are named
  ``%08d.dcm``; ``getImageWithMD5Hash`` names them ``%08d.dcm`` and adds md5hashes.csv (rows in
  hash-map order, not zip order); ``getSeriesSize`` counts the DICOM files only;
- a server-side failure mid-series ("abort") closes the zip early: a valid zip short of files and of
  md5hashes.csv;
- an unknown query parameter is HTTP 400 (v4 checks them).
Static files and blobs (GitHub raw, the MD.ai URL) are plain files: Content-Length, and Range is
honoured unless ``honour_range`` is False.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import parse_qs, urlparse

from pathlib import Path

from stages.sources import covidnet_files as covidnet, nbia

COLLECTION = "MIDRC-RICORD-1C"
ZIP_DATE = (2020, 11, 2, 9, 0, 0)
ZIP_ENDPOINTS = ("getImage", "getImageWithMD5Hash")
LICENSE_TEXT = b"Creative Commons Attribution-NonCommercial 4.0 International (CC BY-NC 4.0)\n"
# v4's allowed query parameters per endpoint (V4_*.java ``allowedParams``).
ALLOWED_PARAMS = {
    "getSeries": {"Collection", "format", "PatientID", "StudyInstanceUID", "Modality", "BodyPartExamined",
                  "ManufacturerModelName", "Manufacturer", "SeriesInstanceUID"},
    "getImage": {"SeriesInstanceUID", "NewFileNames", "IncludeMD5"},
    "getImageWithMD5Hash": {"SeriesInstanceUID"},
    "getSeriesSize": {"SeriesInstanceUID", "format"},
}


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def make_zip(entries: dict[str, bytes], date_time: tuple = ZIP_DATE) -> bytes:
    """A zip of ``entries`` in order, every entry dated ``date_time``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=date_time), data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


class FakeNBIA:
    """State of the fake NBIA server: series, blobs, a fault plan and a request log."""

    def __init__(self) -> None:
        self.series: dict[str, dict[str, Any]] = {}
        self.blobs: dict[str, bytes] = {}
        self.plan: dict[tuple[str, str], list[str]] = {}
        self.forever: dict[tuple[str, str], str] = {}
        self.honour_range = True
        self.log: list[dict[str, Any]] = []
        self.static: dict[str, bytes] = {}  # URL path -> body, served as-is (reference files)
        self.lock = threading.Lock()
        self.base_url = ""
        self.zips_served = 0  # dates each zip's entries: the real server stamps them at request time

    def add_series(self, uid: str, modality: str, files: dict[str, bytes],
                   extra: dict[str, bytes] | None = None) -> None:
        meta = {"SeriesInstanceUID": uid, "StudyInstanceUID": uid + ".0", "PatientID": f"MIDRC-RICORD-1C-{uid[-2:]}",
                "Modality": modality, "Collection": COLLECTION, "ImageCount": len(files)}
        self.series[uid] = {"meta": meta, "files": files, "extra": extra or {}}

    def fail(self, endpoint: str, key: str, *actions: str, forever: str | None = None) -> None:
        """Answer the next requests for (endpoint, key) with ``actions``, then ``forever`` if given."""
        self.plan[(endpoint, key)] = list(actions)
        if forever:
            self.forever[(endpoint, key)] = forever

    def clear_faults(self) -> None:
        self.plan.clear()
        self.forever.clear()

    def next_action(self, endpoint: str, key: str) -> str:
        with self.lock:
            queue = self.plan.get((endpoint, key))
            if queue:
                return queue.pop(0)
            return self.forever.get((endpoint, key), "ok")

    def requests(self, endpoint: str | None = None, key: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.log if endpoint in (None, r["endpoint"]) and key in (None, r["key"])]

    def served_files(self, uid: str, new_file_names: bool) -> dict[str, bytes]:
        """The series' DICOM files by the names its zip gives them."""
        files = self.series[uid]["files"]
        if new_file_names:
            return dict(files)
        return {f"{n:08d}.dcm": data for n, data in enumerate(files.values(), start=1)}

    def zip_for(self, uid: str, with_md5: bool, bad_md5: bool = False, *, license_entry: bool = False,
                new_file_names: bool = True, abort: bool = False, date_time: tuple = ZIP_DATE) -> bytes:
        """The series zip as the service builds it (see the module docstring); ``abort`` stops after
        the first file as the server does on an error, closing the zip without md5hashes.csv."""
        entry = self.series[uid]
        served = self.served_files(uid, new_file_names)
        served.update(entry["extra"])  # planted entries (zip-slip tests) keep their names
        entries = {"LICENSE": LICENSE_TEXT} if license_entry else {}
        entries.update(list(served.items())[:1] if abort else served)
        if with_md5 and not abort:
            rows = [(name, "0" * 32 if bad_md5 and i == 0 else md5_hex(data)) for i, (name, data) in enumerate(served.items())]
            listing = "Filename,MD5Hash\n" + "".join(f"{n},{h}\n" for n, h in sorted(rows, key=lambda r: r[1]))
            entries[nbia.MD5_LIST] = listing.encode()
        return make_zip(entries, date_time)

    def body(self, endpoint: str, key: str, query: dict[str, str], action: str) -> tuple[int, bytes]:
        if endpoint == "getSeries":
            found = [s["meta"] for s in self.series.values()
                     if query.get("Modality") in s.get("listed_under", {s["meta"]["Modality"]})
                     and query.get("Collection") == COLLECTION]
            return 200, json.dumps(found).encode() if found else b""  # NBIA: empty body for no results
        if endpoint == "blob":
            return (200, self.blobs[key]) if key in self.blobs else (404, b"")
        if key not in self.series:
            return 404, b""
        if endpoint in ZIP_ENDPOINTS:
            with self.lock:
                self.zips_served += 1
                stamp = (2026, 1, 1, 0, self.zips_served // 30 % 60, self.zips_served * 2 % 60)
            md5 = endpoint == "getImageWithMD5Hash"
            return 200, self.zip_for(key, md5, action == "bad_md5", license_entry=not md5,
                                     new_file_names=not md5 and query.get("NewFileNames", "").lower() == "yes",
                                     abort=action == "abort", date_time=stamp)
        if endpoint == "getSeriesSize":
            files = self.series[key]["files"]
            total = sum(map(len, files.values())) + (1 if action == "bad_size" else 0)
            return 200, json.dumps([{"TotalSizeInBytes": str(total), "ObjectCount": str(len(files))}]).encode()
        return 404, b""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # chunked bodies need it

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                if url.path in fake.static:
                    data = fake.static[url.path]
                    with fake.lock:
                        fake.log.append({"endpoint": "static", "key": url.path, "status": 200})
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                parts = url.path.strip("/").split("/")
                endpoint = parts[-2] if len(parts) >= 2 and parts[-2] == "blob" else parts[-1]
                key = parts[-1] if endpoint == "blob" else query.get("SeriesInstanceUID", query.get("Modality", ""))
                unknown = sorted(set(query) - ALLOWED_PARAMS.get(endpoint, set(query)))
                action = "400" if unknown else fake.next_action(endpoint, key)
                record = {"endpoint": endpoint, "key": key, "query": query, "range": self.headers.get("Range"),
                          "action": action}
                with fake.lock:
                    fake.log.append(record)
                if action.isdigit():
                    record["status"] = int(action)
                    self.send_response(int(action))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if action == "slow":
                    time.sleep(1.0)
                status, data = fake.body(endpoint, key, query, action)
                record["status"] = status
                if status == 200 and endpoint in ZIP_ENDPOINTS:
                    self.stream(data, truncate=action == "truncate")
                    return
                headers = {}
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if status == 200 and match and fake.honour_range:
                    start = int(match.group(1))
                    if start >= len(data):
                        status, data = 416, b""
                    else:
                        headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                        status, data = 206, data[start:]
                record["status"] = status
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    if action == "truncate":  # promise the whole body, send half, hang up
                        self.wfile.write(data[: len(data) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    self.close_connection = True

            def stream(self, data: bytes, truncate: bool) -> None:
                """A zip as NBIA sends it: chunked, no Content-Length, Range ignored; ``truncate``
                hangs up half-way, before the final chunk."""
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                body = data[: len(data) // 2] if truncate else data
                try:
                    for start in range(0, len(body), 8192):
                        chunk = body[start:start + 8192]
                        self.wfile.write(f"{len(chunk):X}\r\n".encode() + chunk + b"\r\n")
                    if truncate:
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

        return Handler


@contextlib.contextmanager
def serving(fake: FakeNBIA) -> Iterator[FakeNBIA]:
    """Run ``fake`` on 127.0.0.1 (a free port) for the duration of the block."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    fake.root_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    fake.base_url = f"{fake.root_url}/nbia-api/services/v4/"
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()


def serve_covidnet_files(fake: FakeNBIA, shared: Path) -> None:
    """Serve COVID-Net's pinned reference files and COVIDx 8B lists from ``shared`` (../shared/data)
    at their GitHub raw paths, so their sha256 pins hold."""
    for name, (repository_path, _) in covidnet.REFERENCE_FILES.items():
        fake.static[f"/{covidnet.REPOSITORY}/{covidnet.COMMIT}/{repository_path}"] = (
            shared / "ricord-covidnet" / name).read_bytes()
    for name, (repository_path, _) in covidnet.COVIDX_LIST_FILES.items():
        fake.static[f"/{covidnet.REPOSITORY}/{covidnet.COMMIT}/{repository_path}"] = (
            shared / "covidx" / f"{name}_COVIDx8B.txt").read_bytes()
