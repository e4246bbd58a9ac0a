"""The fetch manifest: whole lines under concurrency, torn lines, latest status per ID."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from data_pipeline.fetch_manifest import ManifestWriter, latest_status


def test_concurrent_appends_write_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    n_threads, per_thread = 8, 50
    padding = "x" * 5000  # long lines: a torn write would show
    with ManifestWriter(path) as writer:
        def work(t: int) -> None:
            for i in range(per_thread):
                writer.append({"id": f"{t}{i:03d}", "status": "ok", "reason": padding})

        threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # ends with a newline
    records = [json.loads(line) for line in lines[:-1]]
    assert len(records) == n_threads * per_thread
    assert all(r["reason"] == padding for r in records)


def test_torn_last_line_is_closed_and_skipped_by_readers(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(b'{"id":"1ABC","status":"ok","path":"1ABC.cif.gz"}\n{"id":"2XY')  # killed mid-write
    with ManifestWriter(path) as writer:
        writer.append({"id": "2XYZ", "status": "missing", "path": None})
    raw = path.read_bytes().split(b"\n")
    assert raw[1] == b'{"id":"2XY' and json.loads(raw[2])["id"] == "2XYZ"
    records = latest_status(path)
    assert set(records) == {"1ABC", "2XYZ"}


def test_latest_status_keeps_the_last_line_per_id_and_resolves_paths(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    with ManifestWriter(path) as writer:
        writer.append({"id": "1ABC", "status": "failed", "path": None})
        writer.append({"id": "2XYZ", "status": "ok", "path": "2XYZ.cif.gz"})
        writer.append({"id": "1ABC", "status": "ok", "path": "1ABC.cif.gz"})
    records = latest_status(path)
    assert list(records) == ["1ABC", "2XYZ"]
    assert records["1ABC"]["status"] == "ok"
    assert records["1ABC"]["path"] == str((tmp_path / "1ABC.cif.gz").resolve())
    assert latest_status(path, resolve_paths=False)["2XYZ"]["path"] == "2XYZ.cif.gz"
