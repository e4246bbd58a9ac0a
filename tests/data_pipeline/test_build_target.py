"""What a build may replace at its output path (data_pipeline.build_target, store_writer):
only a folder of store files; anything else is never deleted, even with overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_pipeline.build import StoreConfigMismatch, build_store
from data_pipeline.store import PointCloudStore, StoreError
from data_pipeline.store_writer import write_store
from protein_care.cli import main

SOURCES = ["biopython/1A8O.cif.gz", "biopython/1A7G.cif.gz"]


def _build(pdb_dir: Path, out: Path, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return build_store([pdb_dir / s for s in SOURCES], out, **kw)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def not_a_store(tmp_path) -> Path:
    """A results folder that happens to hold a meta.json (the review's reproduction)."""
    out = tmp_path / "notastore"
    (out / "checkpoints").mkdir(parents=True)
    (out / "meta.json").write_text(json.dumps({"experiment": "x"}))
    (out / "results.csv").write_text("precious results\n")
    (out / "checkpoints" / "epoch10.pt").write_bytes(b"w")
    return out


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_folder_with_a_foreign_meta_json_is_never_replaced(pdb_dir, not_a_store, overwrite):
    before = _tree(not_a_store)
    with pytest.raises(StoreError, match="not a store") as info:
        _build(pdb_dir, not_a_store, overwrite=overwrite)
    message = str(info.value)
    assert str(not_a_store) in message and "results.csv" in message and "checkpoints/" in message
    assert "different configuration" not in message
    assert _tree(not_a_store) == before


def test_a_foreign_meta_json_alone_is_not_a_store_not_another_configuration(pdb_dir, tmp_path):
    out = tmp_path / "only-meta"
    out.mkdir()
    (out / "meta.json").write_text(json.dumps({"experiment": "x"}))
    for overwrite in (False, True):
        with pytest.raises(StoreError, match="not a store.*meta.json is not a store's"):
            _build(pdb_dir, out, overwrite=overwrite)
    assert json.loads((out / "meta.json").read_text()) == {"experiment": "x"}


def test_extra_files_in_a_store_folder_are_never_deleted(pdb_dir, tmp_path):
    out = tmp_path / "store"
    _build(pdb_dir, out)
    (out / "notes.txt").write_text("mine")
    assert _build(pdb_dir, out).status == "up-to-date"  # reading it is fine
    with pytest.raises(StoreConfigMismatch):
        _build(pdb_dir, out, selection="heavy")
    with pytest.raises(StoreError, match="holds a store but it also holds notes.txt"):
        _build(pdb_dir, out, selection="heavy", overwrite=True)
    (out / "coords.npy").write_bytes(b"damaged")  # a damaged store of this configuration
    with pytest.raises(StoreError, match="damaged store .* it also holds notes.txt"):
        _build(pdb_dir, out)
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    assert _build(pdb_dir, out, selection="heavy", overwrite=True).status == "built"
    assert PointCloudStore(out).meta["config"]["selection"] == "heavy"


def test_the_replacing_writer_checks_again(tmp_path):
    """A folder that became a non-store after the build's check is not deleted at commit."""
    out = tmp_path / "syn"
    write_store([], out)
    write_store([], out, overwrite=True)  # a store: replaced
    (out / "results.csv").write_text("x")
    with pytest.raises(StoreError, match="not a store .*results.csv"):
        write_store([], out, overwrite=True)
    assert (out / "results.csv").read_text() == "x" and not list(tmp_path.glob(".syn.*"))


def test_cli_overwrite_keeps_a_folder_that_is_not_a_store(pdb_dir, not_a_store, capsys):
    before = _tree(not_a_store)
    code = main(["build-dataset", "--source", str(pdb_dir / SOURCES[0]), "--out", str(not_a_store),
                 "--workers", "1", "--no-progress", "--overwrite"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "refused" in err and "not a store" in err and "results.csv" in err
    assert _tree(not_a_store) == before
