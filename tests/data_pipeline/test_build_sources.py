"""The sources of a build (data_pipeline.build_sources): folders searched through
symlinked sub-folders, and file names that are not UTF-8."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from data_pipeline.build import EmptyBuild, build_store
from data_pipeline.build_sources import find_structure_files
from data_pipeline.store import PointCloudStore
from protein_care.cli import main

A8O, A7G = "biopython/1A8O.cif.gz", "biopython/1A7G.cif.gz"


def _build(sources, out, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return build_store(sources, out, **kw)


# ------------------------------------------------------------------ symlinked folders


@pytest.fixture
def linked(pdb_dir, tmp_path) -> tuple[Path, Path]:
    """``src/link -> ../real`` and ``src/again -> ../real``, ``real/sub/loop -> ..`` (a
    loop), with one real structure file in ``real/sub`` and one in ``src``."""
    real, src = tmp_path / "real", tmp_path / "src"
    (real / "sub").mkdir(parents=True)
    src.mkdir()
    shutil.copy(pdb_dir / A8O, real / "sub" / "1A8O.cif.gz")
    shutil.copy(pdb_dir / A7G, src / "1A7G.cif.gz")
    (src / "link").symlink_to("../real")
    (src / "again").symlink_to("../real")
    (real / "sub" / "loop").symlink_to("..")
    return src, real


def test_symlinked_sub_folders_are_followed_once(linked):
    src, real = linked
    found = find_structure_files([src])
    assert found == sorted([(src / "1A7G.cif.gz").resolve(), (real / "sub" / "1A8O.cif.gz").resolve()])
    assert find_structure_files([src]) == found  # deterministic


def test_a_build_reads_files_under_symlinked_sub_folders(linked, tmp_path):
    src, _ = linked
    report = _build([src], tmp_path / "store")
    assert report.files_seen == 2 and report.clouds_written == 2
    assert sorted(PointCloudStore(tmp_path / "store").ids) == ["1A7G", "1A8O"]


# ------------------------------------------------------------ non-UTF-8 file names


@pytest.fixture
def latin1(pdb_dir, tmp_path) -> Path:
    """A folder with one UTF-8 name and two Latin-1 ones (one a structure, one junk)."""
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(pdb_dir / A8O, src / "1A8O.cif.gz")
    shutil.copy(pdb_dir / A7G, os.fsencode(src) + b"/caf\xe9_1a7g.cif.gz")
    with open(os.fsencode(src) + b"/bad\xe9.pdb", "wb") as fh:
        fh.write(b"junk")
    return src


def test_a_file_name_that_is_not_utf8_does_not_stop_the_build(latin1, tmp_path):
    out = tmp_path / "store"
    report = _build([latin1], out)
    assert report.status == "built" and report.files_seen == 3 and report.clouds_written == 2
    failures = (out / "failures.tsv").read_text(encoding="utf-8")  # valid UTF-8
    assert f"{latin1}/bad\\udce9.pdb\tunrecognised format" in failures
    sources = (out / "sources.tsv").read_text(encoding="utf-8")
    assert f"{latin1}/caf\\udce9_1a7g.cif.gz\t" in sources
    assert _build([latin1], out).status == "up-to-date"  # the configuration hash is stable
    assert PointCloudStore(out, verify=True).verify_checksums()


def test_an_empty_build_lists_a_non_utf8_name_beside_the_store(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with open(os.fsencode(src) + b"/bad\xe9.pdb", "wb") as fh:
        fh.write(b"junk")
    with pytest.raises(EmptyBuild) as info:
        _build([src], tmp_path / "store")
    assert info.value.failures_path is not None
    assert "bad\\udce9.pdb\tunrecognised format" in info.value.failures_path.read_text(encoding="utf-8")


def test_cli_builds_a_folder_with_a_non_utf8_name(latin1, tmp_path, capsys):
    out = tmp_path / "store"
    code = main(["build-dataset", "--source", str(latin1), "--out", str(out), "--workers", "2", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert "clouds written    2" in capsys.readouterr().out
