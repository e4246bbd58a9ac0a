"""A fake RCSB on 127.0.0.1 for the fetch tests and ``benchmarks/bench_fetch.py``.

One ``ThreadingHTTPServer`` (HTTP/1.1, keep-alive) on a random free port serves:

* ``GET /download/{NAME}``: bytes registered with :meth:`LoopbackRCSB.add_file`, after
  the faults queued for that name with :meth:`LoopbackRCSB.add_faults` (one per request,
  in order; a ``sticky`` fault is never used up);
* ``GET /holdings/removed/{ID}``: JSON registered with :meth:`LoopbackRCSB.add_removed`,
  else 404 (as data.rcsb.org does for entries that were never removed);
* ``POST /search``: RCSB Search API v2 pagination over :attr:`LoopbackRCSB.search_hits`
  (or :attr:`LoopbackRCSB.search_raw`, served as is with status 200, when set); every
  posted JSON body is kept in :attr:`LoopbackRCSB.search_bodies`.

Every request is logged (:meth:`LoopbackRCSB.count`); past ``max_requests`` the server
answers 500 and sets :attr:`LoopbackRCSB.over_budget`, so a runaway client cannot loop
forever. Real structure files come from ``$PROTEIN_CARE_TEST_PDB`` (default
``<repo>/../shared/pdb``); they are read, never copied into the repository.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def shared_pdb_dir() -> Path:
    """The shared folder of real structure files (``$PROTEIN_CARE_TEST_PDB``)."""
    return Path(os.environ.get("PROTEIN_CARE_TEST_PDB", REPO.parent / "shared" / "pdb"))


# Small real entries: (RCSB-style name, file under the shared folder).
REAL_FILES: dict[str, str] = {
    "1A7G.cif.gz": "biopython/1A7G.cif.gz",
    "1AKI.cif.gz": "biotite/1aki.cif.gz",
    "1BNA.cif.gz": "biotite/1bna.cif.gz",
    "1AKI.pdb.gz": "biotite/1aki.pdb.gz",
    "1BNA.pdb.gz": "biotite/1bna.pdb.gz",
}


def have_shared_pdb() -> bool:
    """True when the real structure files of :data:`REAL_FILES` are reachable."""
    return all((shared_pdb_dir() / rel).is_file() for rel in REAL_FILES.values())


def real_file_bytes(name: str) -> bytes:
    """Bytes of one of :data:`REAL_FILES` (gzip, exactly as RCSB would serve them)."""
    return (shared_pdb_dir() / REAL_FILES[name]).read_bytes()


def relabelled(name: str, pdb_id: str) -> bytes:
    """One of :data:`REAL_FILES` as entry ``pdb_id`` would be served: the mmCIF block name
    and ``_entry.id`` (or the PDB HEADER ID code) rewritten, gzipped again."""
    text = gzip.decompress(real_file_bytes(name))
    old, new = name.split(".")[0].encode(), pdb_id.upper().encode()
    if name.endswith(".cif.gz"):
        text = re.sub(rb"(?m)^(data_|_entry\.id[ \t]+)" + old + rb"(?=\s)", rb"\g<1>" + new, text)
    else:
        text = re.sub(rb"(?m)^(HEADER.{56})" + old, rb"\g<1>" + new, text)
    return gzip.compress(text, mtime=0)


def gzip_plain_file(relative: str) -> bytes:
    """Gzip-compress a plain (uncompressed) shared file in memory, e.g.
    ``biopython/disordered.pdb``."""
    return gzip.compress((shared_pdb_dir() / relative).read_bytes(), mtime=0)


@dataclass
class Fault:
    """What the server does instead of (or before) serving a file normally.

    Attributes:
        kind: ``status`` (answer ``status`` with ``body`` and ``headers``), ``html200``
            (an HTML page with status 200), ``truncate`` (first half of the file, with a
            Content-Length that matches the half), ``reset`` (full Content-Length, half
            the body, then a TCP reset), ``stall`` (wait ``delay`` s before the headers,
            then serve), ``stall_body`` (headers and half the body, wait ``delay`` s,
            then the rest).
        status: for ``status``.
        body: for ``status``.
        headers: for ``status`` (e.g. ``{"Retry-After": "1"}``).
        delay: seconds, for ``stall`` and ``stall_body``.
        sticky: when true the fault applies to every request and is never used up.
    """

    kind: str
    status: int = 503
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    sticky: bool = False


HTML_PAGE = b"<!DOCTYPE html><html><body><h1>Service temporarily unavailable</h1></body></html>"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: LoopbackRCSB

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001
        pass  # clients that hang up (timeouts, resets) are part of the tests


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms Nagle + delayed-ACK stalls on keep-alive
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    # -- plumbing ---------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _begin(self, method: str) -> bool:
        owner = self.server.owner
        if not owner.log(method, self.path):
            self._send(500, b"request budget exhausted", "text/plain")
            return False
        if owner.latency:
            owner.stopped.wait(owner.latency)
        return True

    # -- routes -----------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        if not self._begin("GET"):
            return
        owner = self.server.owner
        if self.path.startswith("/download/"):
            self._download(self.path[len("/download/"):])
        elif self.path.startswith("/holdings/removed/"):
            pdb_id = self.path.rsplit("/", 1)[-1].upper()
            payload = owner.removed.get(pdb_id)
            if payload is None:
                body = json.dumps({"status": 404, "message": f"No removed entry {pdb_id}"})
                self._send(404, body.encode(), "application/json")
            else:
                self._send(200, json.dumps(payload).encode(), "application/json")
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        if not self._begin("POST"):
            return
        owner = self.server.owner
        if self.path != "/search":
            self._send(404, b"not found", "text/plain")
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(400, b'{"message": "bad JSON"}', "application/json")
            return
        with owner.lock:
            owner.search_bodies.append(body)
        if owner.search_status != 200:
            self._send(owner.search_status, b'{"message": "Invalid query"}', "application/json")
            return
        if owner.search_raw is not None:
            self._send(200, owner.search_raw, "application/json")
            return
        page = body.get("request_options", {}).get("paginate", {"start": 0, "rows": 10})
        start, rows = int(page["start"]), int(page["rows"])
        hits = owner.search_hits[start : start + rows]
        if not hits:
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        answer = {
            "query_id": "loopback",
            "result_type": "entry",
            "total_count": len(owner.search_hits),
            "result_set": [{"identifier": h, "score": 1.0} for h in hits],
        }
        self._send(200, json.dumps(answer).encode(), "application/json")

    def _download(self, name: str) -> None:
        owner = self.server.owner
        data = owner.files.get(name)
        fault = owner.next_fault(name)
        if fault is None:
            if data is None:
                self._send(404, b"<html><body>404 Not Found</body></html>", "text/html")
            else:
                self._send(200, data, "application/octet-stream")
            return
        kind = fault.kind
        data = data or b""
        half = len(data) // 2
        if kind == "status":
            self._send(fault.status, fault.body, "text/html", fault.headers)
        elif kind == "html200":
            self._send(200, HTML_PAGE, "text/html")
        elif kind == "truncate":
            self._send(200, data[:half], "application/octet-stream")
        elif kind == "stall":
            owner.stopped.wait(fault.delay)
            self._send(200, data, "application/octet-stream")
        elif kind in ("reset", "stall_body"):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:half])
            self.wfile.flush()
            if kind == "stall_body":
                owner.stopped.wait(fault.delay)
                self.wfile.write(data[half:])
                return
            # SO_LINGER 0: closing now sends RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
        else:
            raise ValueError(f"unknown fault kind {kind!r}")


class LoopbackRCSB:
    """The fake services; use as a context manager (starts and stops the server).

    Args:
        latency: seconds each response waits before it is sent (for benchmarks).
        max_requests: the request budget (see the module docstring).
    """

    def __init__(self, *, latency: float = 0.0, max_requests: int = 2000) -> None:
        self.latency = latency
        self.max_requests = max_requests
        self.files: dict[str, bytes] = {}
        self.faults: dict[str, list[Fault]] = {}
        self.removed: dict[str, dict] = {}
        self.search_hits: list[str] = []
        self.search_status = 200
        self.search_raw: bytes | None = None
        self.search_bodies: list[dict] = []
        self.requests: list[tuple[float, str, str]] = []
        self.over_budget = False
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- set-up -----------------------------------------------------------------
    def add_file(self, name: str, data: bytes) -> None:
        """Serve ``data`` at ``/download/{name}``."""
        self.files[name] = data

    def add_faults(self, name: str, *faults: Fault) -> None:
        """Queue faults for ``name``: request k meets fault k, later ones are served."""
        self.faults.setdefault(name, []).extend(faults)

    def add_removed(self, pdb_id: str, replaced_by: list[str] | None = None) -> None:
        """Make the holdings service report ``pdb_id`` as removed (and superseded)."""
        removed: dict = {"remove_date": "2017-03-01T00:00:00+0000", "status_code": "OBS"}
        if replaced_by:
            removed["id_codes_replaced_by"] = list(replaced_by)
        self.removed[pdb_id.upper()] = {
            "rcsb_id": pdb_id.upper(),
            "rcsb_repository_holdings_removed": removed,
        }

    # -- used by the handler ----------------------------------------------------
    def log(self, method: str, path: str) -> bool:
        with self.lock:
            self.requests.append((time.monotonic(), method, path))
            if len(self.requests) > self.max_requests:
                self.over_budget = True
                return False
        return True

    def next_fault(self, name: str) -> Fault | None:
        with self.lock:
            queue = self.faults.get(name)
            if not queue:
                return None
            return queue[0] if queue[0].sticky else queue.pop(0)

    # -- inspection ---------------------------------------------------------------
    def count(self, fragment: str = "", method: str | None = None) -> int:
        """Requests whose path contains ``fragment`` (and, if given, with ``method``)."""
        with self.lock:
            return sum(
                1 for _, m, p in self.requests if fragment in p and (method is None or m == method)
            )

    def times(self, fragment: str) -> list[float]:
        """Monotonic arrival times of the requests whose path contains ``fragment``."""
        with self.lock:
            return [t for t, _, p in self.requests if fragment in p]

    def reset_log(self) -> None:
        """Forget the requests seen so far."""
        with self.lock:
            self.requests.clear()

    # -- URLs and life cycle ------------------------------------------------------
    @property
    def root(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"{self.root}/download"

    @property
    def holdings_url(self) -> str:
        return f"{self.root}/holdings/removed"

    @property
    def search_url(self) -> str:
        return f"{self.root}/search"

    def start(self) -> LoopbackRCSB:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()  # wakes stalled handlers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackRCSB:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/download"
