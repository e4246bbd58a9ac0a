"""fetch() from a local wwPDB mirror in the divided layout: offline copy + verify."""

from __future__ import annotations

import errno
from pathlib import Path
from unittest import mock

import pytest

from data_pipeline.fetch import fetch
from data_pipeline.fetch_manifest import MANIFEST_NAME, ManifestWriter, latest_status
from protein_care import cli

try:
    from . import loopback_server as lb
except ImportError:  # tests/ is not a package: pytest put this folder on sys.path
    import loopback_server as lb

pytestmark = [
    pytest.mark.skipif(not lb.have_shared_pdb(), reason="shared/pdb not found"),
    pytest.mark.timeout(60),
]


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    root = tmp_path / "mirror"
    for pdb_id in ("1AKI", "1BNA"):
        low = pdb_id.lower()
        cif = root / "mmCIF" / low[1:3] / f"{low}.cif.gz"
        pdb = root / "pdb" / low[1:3] / f"pdb{low}.ent.gz"
        for path, name in ((cif, f"{pdb_id}.cif.gz"), (pdb, f"{pdb_id}.pdb.gz")):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(lb.real_file_bytes(name))
    broken = root / "mmCIF" / "a7" / "1a7g.cif.gz"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(lb.real_file_bytes("1A7G.cif.gz")[:5000])
    return root


@pytest.mark.parametrize("fmt", ["cif", "pdb"])
def test_mirror_copies_and_verifies_without_network(mirror: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "cache"
    dead = lb.closed_port_url()  # any network use would fail
    report = fetch(["1aki", "1bna", "9zzz"], out, format=fmt, mirror=mirror, base_url=dead,
                   holdings_url=dead, progress=False)
    by_id = {r.id: r for r in report.results}
    assert by_id["1AKI"].status == by_id["1BNA"].status == "ok"
    assert (out / f"1AKI.{fmt}.gz").read_bytes() == lb.real_file_bytes(f"1AKI.{fmt}.gz")
    assert by_id["1AKI"].source.endswith(("1aki.cif.gz", "pdb1aki.ent.gz"))
    assert by_id["9ZZZ"].status == "missing" and "not in mirror" in by_id["9ZZZ"].reason
    again = fetch(["1aki", "1bna"], out, format=fmt, mirror=mirror, progress=False)
    assert [r.status for r in again.results] == ["cached", "cached"]


def test_corrupt_mirror_file_is_invalid_and_not_copied(mirror: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    report = fetch(["1a7g"], out, mirror=mirror, progress=False)
    assert report.results[0].status == "invalid" and "truncated" in report.results[0].reason
    assert not (out / "1A7G.cif.gz").exists()
    assert latest_status(out / MANIFEST_NAME)["1A7G"]["status"] == "invalid"


def test_mirror_file_of_another_entry_is_invalid(mirror: Path, tmp_path: Path) -> None:
    wrong = mirror / "mmCIF" / "ok" / "1ok2.cif.gz"
    wrong.parent.mkdir(parents=True)
    wrong.write_bytes(lb.real_file_bytes("1AKI.cif.gz"))
    report = fetch(["1ok2"], tmp_path / "cache", mirror=mirror, progress=False)
    result = report.results[0]
    assert result.status == "invalid"
    assert "file is entry '1AKI'" in result.reason and "not the requested 1OK2" in result.reason
    assert not (tmp_path / "cache" / "1OK2.cif.gz").exists()


def test_whole_archive_mirror_root_is_also_understood(mirror: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    (archive / "data" / "structures").mkdir(parents=True)
    mirror.rename(archive / "data" / "structures" / "divided")
    report = fetch(["1aki"], tmp_path / "cache", mirror=archive, progress=False)
    assert report.results[0].status == "ok"


def _disk_full_at_append(monkeypatch, n: int) -> None:
    """The n-th manifest line fails as on a full disk (ENOSPC)."""
    real, calls = ManifestWriter.append, []

    def append(self, record):
        calls.append(record["id"])
        if len(calls) == n:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, record)

    monkeypatch.setattr(ManifestWriter, "append", append)


def test_a_full_disk_during_the_run_stops_it_with_the_partial_report(mirror, tmp_path, monkeypatch):
    from data_pipeline.atomic_files import RunIOError

    _disk_full_at_append(monkeypatch, 2)
    out = tmp_path / "cache"
    with pytest.raises(RunIOError) as info:
        fetch(["1aki", "1bna", "9zzz"], out, mirror=mirror, workers=1, progress=False)
    exc = info.value
    assert isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    assert str(exc) == f"I/O error while recording results in {out / MANIFEST_NAME}: [Errno 28] No space left on device"
    done = {r.id: r.status for r in exc.partial.results}
    assert done["1AKI"] == done["1BNA"] == "ok" and (out / "1BNA.cif.gz").exists()
    recorded = latest_status(out / MANIFEST_NAME)
    assert "1AKI" in recorded and "1BNA" not in recorded and set(recorded) <= set(done)


def _fetch_cli(argv: list[str]) -> int:
    with mock.patch.object(cli, "COMMANDS", ("fetch_pdb",)):  # no torch import
        try:
            return cli.main(argv)
        except SystemExit as exc:
            return int(exc.code or 0)


def test_cli_reports_a_full_disk_as_an_io_error_not_a_bad_out(mirror, tmp_path, monkeypatch, capsys):
    _disk_full_at_append(monkeypatch, 2)
    out = tmp_path / "cache"
    code = _fetch_cli(["fetch-pdb", "1aki", "1bna", "--out", str(out), "--mirror", str(mirror), "--workers", "1",
                       "--no-progress"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 4
    assert "argument --out" not in captured.err
    error = [line for line in captured.err.splitlines() if "error" in line]
    assert len(error) == 1 and error[0].startswith(
        f"protein-care fetch-pdb: error: I/O error while recording results in {out / MANIFEST_NAME}: "
        "[Errno 28] No space left on device")
    assert "ok               2" in captured.out  # the partial summary
    from protein_care.commands import fetch_pdb

    assert "4  an I/O error (e.g. a full disk) stopped the run" in fetch_pdb.EPILOG  # the --help text


def test_cli_set_up_problem_with_out_is_still_an_argument_error(mirror, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code = _fetch_cli(["fetch-pdb", "1aki", "--out", str(tmp_path / "file" / "cache"), "--mirror", str(mirror)])
    assert code == 2 and "argument --out: cannot use" in capsys.readouterr().err

