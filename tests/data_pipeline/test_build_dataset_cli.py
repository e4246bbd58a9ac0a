"""``protein-care build-dataset`` end to end on a few real files."""

from __future__ import annotations

import errno
import json

import pytest

import data_pipeline.store_writer as store_writer
from data_pipeline.store import PointCloudStore
from protein_care.cli import main

FILES = ["biotite/1l2y.pdb.gz", "biotite/1aki.cif.gz", "BM5-clean/1A2K_r_u.pdb.gz", "biotite/1bna.pdb.gz"]


def test_build_dataset_from_sources_then_no_op(pdb_dir, tmp_path, capsys):
    out = tmp_path / "store"
    args = ["build-dataset", "--out", str(out), "--workers", "1", "--no-progress"]
    for f in FILES:
        args += ["--source", str(pdb_dir / f)]
    assert main(args) == 0
    text = capsys.readouterr().out
    for words in ("files seen", "clouds written", "points", "splits", "split components", "left out", "time",
                  "no protein residues"):
        assert words in text
    store = PointCloudStore(out)
    assert len(store) == 3 and store.meta["config"]["selection"] == "ca"

    assert main(args) == 0
    assert "nothing to do" in capsys.readouterr().out

    assert main([*args, "--selection", "heavy"]) == 1  # refused: another configuration
    assert "selection" in capsys.readouterr().err
    assert main([*args, "--selection", "heavy", "--overwrite", "--per-chain", "--split", "0.5,0.25,0.25"]) == 0
    meta = PointCloudStore(out).meta["config"]
    assert (meta["selection"], meta["per_chain"], meta["split_fractions"]) == ("heavy", True, [0.5, 0.25, 0.25])
    assert main([*args, "--split-identity", "0.3", "--overwrite"]) == 0
    assert PointCloudStore(out).meta["config"]["split_identity"] == 0.3


def test_build_dataset_from_a_folder_and_a_manifest(pdb_dir, tmp_path, capsys):
    manifest = tmp_path / "cache" / "manifest.jsonl"
    manifest.parent.mkdir()
    records = [
        {"id": "1L2Y", "status": "ok", "path": str(pdb_dir / "biotite/1l2y.cif.gz")},
        {"id": "1AKI", "status": "cached", "path": str(pdb_dir / "biotite/1aki.cif.gz")},
        {"id": "9ZZZ", "status": "missing", "path": None},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "store"
    code = main(["build-dataset", "--manifest", str(manifest), "--source", str(pdb_dir / "ProDy"),
                 "--out", str(out), "--workers", "2", "--min-points", "30", "--no-progress"])  # fmt: skip
    assert code == 0
    store = PointCloudStore(out)
    sources = {e["source"] for e in store.entries}
    assert str(pdb_dir / "biotite/1aki.cif.gz") in sources
    assert any("/ProDy/" in s for s in sources)
    assert "filtered" in (out / "failures.tsv").read_text()  # 1l2y has 20 CA < 30


@pytest.mark.parametrize(
    ("extra", "argument"),
    [
        (["--split", "0.9,0.2,0.1"], "--split"),
        (["--min-points", "0"], "--min-points"),
        (["--selection", "cb"], "--selection"),
        (["--workers", "two"], "--workers"),
        (["--split-identity", "30"], "--split-identity"),
        (["--split-identity", "0"], "--split-identity"),
        (["--split-identity", "nan"], "--split-identity"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(pdb_dir, tmp_path, capsys, extra, argument):
    with pytest.raises(SystemExit) as info:
        main(["build-dataset", "--source", str(pdb_dir / "ProDy"), "--out", str(tmp_path / "s"), *extra])
    assert info.value.code == 2
    assert argument in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "argument"),
    [
        (["--source", "/no/such/folder"], "--source"),
        ([], "--source/--manifest"),
        (["--manifest", "/no/such/manifest.jsonl"], "--manifest"),
        (["--source", "{pdb}/ProDy", "--min-points", "10", "--max-points", "5"], "--max-points"),
    ],
)
def test_bad_inputs_exit_2_naming_the_argument(pdb_dir, tmp_path, capsys, args, argument):
    args = [a.replace("{pdb}", str(pdb_dir)) for a in args]
    assert main(["build-dataset", "--out", str(tmp_path / "s"), *args]) == 2
    err = capsys.readouterr().err
    assert f"argument {argument}" in err
    assert not (tmp_path / "s").exists()


def test_no_cloud_at_all_exits_3_and_keeps_the_existing_store(pdb_dir, tmp_path, capsys):
    out = tmp_path / "store"
    assert main(["build-dataset", "--source", str(pdb_dir / "ProDy"), "--out", str(out), "--workers", "1",
                 "--no-progress"]) == 0  # fmt: skip
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.pdb").write_bytes(b"")
    (bad / "page.cif").write_bytes(b"<html><body>502 Bad Gateway</body></html>")
    code = main(["build-dataset", "--source", str(bad), "--out", str(out), "--overwrite", "--workers", "1",
                 "--no-progress"])  # fmt: skip
    assert code == 3
    err = capsys.readouterr().err
    assert "no clouds: all 2 source files were left out" in err and f"{out}.failures.tsv" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    listed = (tmp_path / "store.failures.tsv").read_text()
    assert str(bad / "empty.pdb") in listed and str(bad / "page.cif") in listed


def test_a_manifest_file_that_is_gone_is_listed_as_missing(pdb_dir, tmp_path, capsys):
    manifest = tmp_path / "manifest.jsonl"
    gone = tmp_path / "cache" / "9zzz.cif.gz"
    records = [
        {"id": "1AKI", "status": "ok", "path": str(pdb_dir / "biotite/1aki.cif.gz")},
        {"id": "9ZZZ", "status": "ok", "path": str(gone)},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "store"
    assert main(["build-dataset", "--manifest", str(manifest), "--out", str(out), "--workers", "1",
                 "--no-progress"]) == 0  # fmt: skip
    assert "1 listed files do not exist" in capsys.readouterr().err
    assert len(PointCloudStore(out)) == 1
    assert f"{gone}\tmissing: file not found" in (out / "failures.tsv").read_text()

    manifest.write_text(json.dumps(records[1]) + "\n")
    assert main(["build-dataset", "--manifest", str(manifest), "--out", str(tmp_path / "s2"), "--no-progress"]) == 2
    assert "argument --manifest: none of the 1 listed files exist" in capsys.readouterr().err
    assert not (tmp_path / "s2").exists()


def _args(pdb_dir, out, *extra: str) -> list[str]:
    return ["build-dataset", "--source", str(pdb_dir / FILES[1]), "--out", str(out), "--workers", "1",
            "--no-progress", *extra]  # fmt: skip


def test_a_full_disk_during_the_build_is_an_io_error_not_a_bad_out(pdb_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "store"
    assert main(_args(pdb_dir, out)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()

    def disk_full(self, name, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_writer.StoreWriter, "write_text", disk_full)
    assert main(_args(pdb_dir, out, "--selection", "heavy", "--overwrite")) == 4
    err = capsys.readouterr().err
    assert err.strip() == (f"protein-care build-dataset: error: I/O error while writing the store {out}: "
                           "[Errno 28] No space left on device")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old store is kept
    assert not list(tmp_path.glob(".store.*"))
    from protein_care.commands import build_dataset

    assert "4  an I/O error (e.g. a full disk) stopped the build" in build_dataset.EPILOG  # the --help text


def test_a_set_up_problem_with_out_is_still_an_argument_error(pdb_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(_args(pdb_dir, tmp_path / "file" / "store")) == 2
    assert "argument --out: cannot write" in capsys.readouterr().err


def test_an_up_to_date_store_without_failures_tsv_is_reported(pdb_dir, tmp_path, capsys):
    out = tmp_path / "store"
    assert main(_args(pdb_dir, out)) == 0
    (out / "failures.tsv").unlink()  # optional; a store whose checksums do not list it (older stores)
    meta = json.loads((out / "meta.json").read_text())
    del meta["files"]["failures.tsv"]
    (out / "meta.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(_args(pdb_dir, out)) == 0
    captured = capsys.readouterr()
    assert "nothing to do" in captured.out and "left out          0" in captured.out and "error" not in captured.err
