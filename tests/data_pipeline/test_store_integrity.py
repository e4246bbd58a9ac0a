"""Store integrity: value checks on open, recorded checksums, durable commit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from tqdm import tqdm

import data_pipeline.store_writer as store_writer_mod
from data_pipeline.store import PointCloudStore, StoreError
from data_pipeline.store_writer import CloudRecord, write_store


def _synthetic(n: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        k = int(rng.integers(5, 40))
        yield CloudRecord(f"c{i}", rng.normal(size=(k, 3)), rng.integers(0, 21, k).astype(np.uint8), {"group": f"g{i}"})


@pytest.fixture
def store_dir(tmp_path) -> Path:
    out = tmp_path / "syn"
    write_store(_synthetic(), out)
    return out


def _poke(path: Path, index, value) -> None:
    """Change one array value in place (same size: only value checks can see it)."""
    array = np.load(path, mmap_mode="r+")
    array[index] = value
    array.flush()
    del array


def _edit_meta(out: Path, **changes) -> None:
    meta = json.loads((out / "meta.json").read_text())
    meta.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del meta[key]
    (out / "meta.json").write_text(json.dumps(meta))


def test_meta_json_that_is_not_an_object_is_a_clear_error(store_dir):
    (store_dir / "meta.json").write_text("[]")
    with pytest.raises(StoreError, match=r"syn: meta.json must hold a JSON object, found list"):
        PointCloudStore(store_dir)


def test_nan_coordinates_are_refused_when_verified_naming_the_cloud(store_dir):
    store = PointCloudStore(store_dir)
    row = int(store.offsets[2]) + 1
    del store
    _poke(store_dir / "coords.npy", (row, 1), np.nan)
    PointCloudStore(store_dir)  # a plain open reads no point data (the arrays stay memory-mapped)
    words = rf"coords.npy has a non-finite value \(NaN or inf\) at point {row} \(cloud 2, 'c2'\)"
    with pytest.raises(StoreError, match=words):
        PointCloudStore(store_dir, verify=True)


def test_a_writer_refuses_non_finite_coordinates(tmp_path):
    clouds = list(_synthetic())
    clouds[3].coords[2, 0] = np.inf
    with pytest.raises(ValueError, match=r"c3: coordinates must be finite"):
        write_store(clouds, tmp_path / "syn")
    assert not (tmp_path / "syn").exists()


@pytest.mark.parametrize(
    ("file", "index", "value", "words"),
    [
        ("splits.npy", 4, 3, r"splits.npy has code 3 for cloud 4 \('c4'\), but meta.json names 3 splits"),
        ("features.npy", 7, 200, r"features.npy has code 200 at point 7 \(cloud 0, 'c0'\), but the vocabulary"),
    ],
)
def test_codes_out_of_range_are_refused_when_verified(store_dir, file, index, value, words):
    _poke(store_dir / file, index, value)
    with pytest.raises(StoreError, match=words):
        PointCloudStore(store_dir, verify=True)
    if file == "splits.npy":  # split codes are checked on every open too (one byte per cloud)
        with pytest.raises(StoreError, match=words):
            PointCloudStore(store_dir)


def test_checksums_are_recorded_and_verified(store_dir):
    meta = json.loads((store_dir / "meta.json").read_text())
    assert set(meta["files"]) == {"coords.npy", "features.npy", "offsets.npy", "splits.npy",
                                  "ids.json", "entries.jsonl", "failures.tsv"}  # fmt: skip
    assert meta["files"]["coords.npy"]["bytes"] == (store_dir / "coords.npy").stat().st_size
    assert PointCloudStore(store_dir, verify=True).verify_checksums() is True
    coords = np.load(store_dir / "coords.npy")
    _poke(store_dir / "coords.npy", (0, 0), coords[0, 0] + 1.0)  # plausible, finite, same size
    store = PointCloudStore(store_dir)  # the cheap checks cannot see it
    with pytest.raises(StoreError, match=r"syn: damaged store: coords.npy changed since it was written"):
        store.verify_checksums()
    with pytest.raises(StoreError, match="coords.npy changed"):
        PointCloudStore(store_dir, verify=True)
    with open(store_dir / "ids.json", "a") as fh:
        fh.write(" ")
    with pytest.raises(StoreError, match=r"ids.json has \d+ bytes, \d+ were written"):
        PointCloudStore(store_dir)  # a size change is seen on every open


def test_verifying_checksums_can_show_the_bytes_read(store_dir, capsys):
    total = sum(p.stat().st_size for p in store_dir.iterdir() if p.name != "meta.json")
    PointCloudStore(store_dir, verify=True, progress=True)
    bar = capsys.readouterr().err
    assert "verify" in bar and f"/{tqdm.format_sizeof(total)}" in bar  # total: every file but meta.json
    PointCloudStore(store_dir, verify=True)  # quiet by default
    PointCloudStore(store_dir, progress=True)  # nothing to read: no bar
    assert capsys.readouterr().err == ""


def test_a_store_without_checksums_still_opens(store_dir):
    _poke(store_dir / "coords.npy", (0, 0), 5.0)
    _edit_meta(store_dir, files=None)  # as written before checksums were recorded
    store = PointCloudStore(store_dir, verify=True)
    assert store.verify_checksums() is False and len(store) == 6


def test_commit_fsyncs_every_file_and_the_folder_before_the_rename(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(store_writer_mod.os, "replace", replace)
    out = tmp_path / "syn"
    write_store(_synthetic(), out)
    rename = events.index(("replace", next(s for kind, s in events if kind == "replace")))
    tmp = events[rename][1]
    synced_before = {Path(p).name for kind, p in events[:rename] if kind == "fsync" and p.startswith(tmp)}
    assert synced_before == {p.name for p in out.iterdir()} | {Path(tmp).name}  # files and the folder
    assert ("fsync", str(tmp_path)) in events[rename:]  # the rename itself
