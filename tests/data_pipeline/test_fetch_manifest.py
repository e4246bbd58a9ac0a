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


def test_usable_files_keep_a_verified_file_whatever_the_other_format_did(tmp_path: Path) -> None:
    from data_pipeline.build_sources import manifest_files
    from data_pipeline.fetch_manifest import usable_files

    path = tmp_path / "manifest.jsonl"
    with ManifestWriter(path) as writer:
        for pdb_id in ("1BIG", "2TWO", "3CIF", "4OLD"):  # a --format cif run
            writer.append({"id": pdb_id, "status": "ok", "path": f"{pdb_id}.cif.gz", "format": "cif"})
        writer.append({"id": "1BIG", "status": "missing", "path": None, "format": "pdb"})  # mmCIF-only entry
        writer.append({"id": "2TWO", "status": "ok", "path": "2TWO.pdb.gz", "format": "pdb"})  # both formats
        writer.append({"id": "3CIF", "status": "invalid", "path": None, "format": "cif"})  # its file went bad
        writer.append({"id": "3CIF", "status": "cached", "path": "3CIF.pdb.gz", "format": "pdb"})
        writer.append({"id": "5PDB", "status": "ok", "path": "5PDB.pdb.gz"})  # before lines had a format
    names = [p.name for p in usable_files(path)]
    assert sorted(names) == ["1BIG.cif.gz", "2TWO.cif.gz", "3CIF.pdb.gz", "4OLD.cif.gz", "5PDB.pdb.gz"]
    assert manifest_files(path) == usable_files(path)  # what build-dataset --manifest reads
    assert all(p.is_absolute() for p in usable_files(path))
