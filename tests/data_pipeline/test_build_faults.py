"""build_store under faults: dying workers, builds that give nothing, damaged stores."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

import data_pipeline.build as build_mod
from data_pipeline.build import EmptyBuild, build_store
from data_pipeline.store import PointCloudStore, StoreError

PYTEST_PID = os.getpid()  # the fault hooks must never fire in this process


@pytest.fixture
def bm5(pdb_dir) -> list[Path]:
    return sorted((pdb_dir / "BM5-clean").glob("*.pdb.gz"))[:8]


def _build(sources, out, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return build_store(sources, out, **kw)


def _die_on(monkeypatch, victim: Path, die, once_marker: Path | None = None) -> None:
    """Make the parser process die (``die()``) when it reaches ``victim``; with
    ``once_marker``, only the first time (a transient death, e.g. memory pressure)."""
    real = build_mod.try_read_structure

    def parse(path, **kwargs):
        if Path(path) == victim and not (once_marker and once_marker.exists()):
            assert os.getpid() != PYTEST_PID, "fault hook reached the test process"
            if once_marker:
                once_marker.touch()
            die()
        return real(path, **kwargs)

    monkeypatch.setattr(build_mod, "try_read_structure", parse)  # forked workers inherit it


def _clouds(store: PointCloudStore) -> list[tuple[str, np.ndarray]]:
    return [(store.ids[i], np.array(store[i])) for i in range(len(store))]


@pytest.mark.parametrize(
    ("die", "words"),
    [
        (lambda: os.kill(os.getpid(), signal.SIGKILL), "killed by signal 9 (SIGKILL"),
        (lambda: os._exit(3), "exit code 3"),
    ],
    ids=["sigkill", "exit"],
)
def test_a_file_that_kills_its_worker_is_listed_and_the_rest_is_built(bm5, tmp_path, monkeypatch, die, words):
    reference = PointCloudStore(_build(bm5, tmp_path / "ref").out)
    victim = bm5[3]
    _die_on(monkeypatch, victim, die)
    report = _build(bm5, tmp_path / "store", workers=2)
    assert report.status == "built" and report.clouds_written == len(bm5) - 1
    lines = (tmp_path / "store" / "failures.tsv").read_text().splitlines()[1:]
    assert len(lines) == 1
    file, reason = lines[0].split("\t")
    assert file == str(victim) and reason.startswith("parser process died: ") and words in reason
    assert report.failures_by_reason() == {"parser process died": 1}
    store = PointCloudStore(tmp_path / "store", verify=True)
    expected = [c for c, e in zip(_clouds(reference), reference.entries) if e["source"] != str(victim)]
    got = _clouds(store)
    assert [i for i, _ in got] == [i for i, _ in expected]  # input order kept
    for (_, a), (_, b) in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_a_cloud_the_writer_refuses_is_listed_and_the_rest_is_built(bm5, tmp_path, monkeypatch):
    from data_pipeline import store_writer

    reference = PointCloudStore(_build(bm5, tmp_path / "ref").out)
    sizes = np.diff(reference.offsets)
    victim = int(np.argmin(sizes))
    monkeypatch.setattr(store_writer, "MIN_POINTS", int(sizes[victim]) + 1)  # the writer refuses the smallest
    report = _build(bm5, tmp_path / "store")
    assert report.status == "built" and report.clouds_written == int((sizes > sizes[victim]).sum())
    source = reference.entries[victim]["source"]
    reasons = dict(line.split("\t", 1) for line in (tmp_path / "store" / "failures.tsv").read_text().splitlines()[1:])
    assert reasons[source] == (f"not stored: {reference.ids[victim]}: {sizes[victim]} points, "
                               f"fewer than the {sizes[victim] + 1} a cloud needs")
    store = PointCloudStore(tmp_path / "store", verify=True)
    expected = [c for c, n in zip(_clouds(reference), sizes) if n > sizes[victim]]
    got = _clouds(store)
    assert [i for i, _ in got] == [i for i, _ in expected]
    for (_, a), (_, b) in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_a_worker_that_dies_once_loses_nothing(bm5, tmp_path, monkeypatch):
    _die_on(monkeypatch, bm5[5], lambda: os.kill(os.getpid(), signal.SIGKILL), once_marker=tmp_path / "died")
    report = _build(bm5, tmp_path / "store", workers=2)
    assert (tmp_path / "died").exists()  # the fault did fire
    assert report.clouds_written == len(bm5) and report.failures == []


def _all_fail(monkeypatch) -> None:
    def parse(path, **kwargs):
        return build_mod.ParseFailure(path, "parse error: simulated")

    monkeypatch.setattr(build_mod, "try_read_structure", parse)


def test_a_build_that_gives_no_cloud_writes_nothing_and_keeps_the_old_store(bm5, tmp_path, monkeypatch):
    out = tmp_path / "store"
    _build(bm5[:2], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _all_fail(monkeypatch)
    with pytest.raises(EmptyBuild, match=r"no clouds: all 3 source files were left out \(3 parse error\)") as info:
        _build(bm5[:3], out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched
    assert info.value.failures_path == tmp_path / "store.failures.tsv"
    assert str(info.value.failures_path) in str(info.value) and "was left as it was" in str(info.value)
    lines = info.value.failures_path.read_text().splitlines()
    assert lines[0] == "file\treason" and sorted(lines[1:]) == [f"{p}\tparse error: simulated" for p in bm5[:3]]
    assert sorted(q.name for q in tmp_path.iterdir()) == ["store", "store.failures.tsv"]  # no temporaries

    fresh = tmp_path / "fresh"
    with pytest.raises(EmptyBuild, match="was not written"):
        _build(bm5[:1], fresh)
    assert not fresh.exists()
    monkeypatch.undo()
    _build(bm5[:1], fresh)  # a later good build removes the stale list
    assert PointCloudStore(fresh) and not (tmp_path / "fresh.failures.tsv").exists()


def test_missing_sources_are_listed_when_allowed(bm5, tmp_path):
    gone = tmp_path / "gone.pdb.gz"
    with pytest.raises(FileNotFoundError, match="gone.pdb.gz"):
        _build([*bm5[:2], gone], tmp_path / "strict")
    report = _build([*bm5[:2], gone], tmp_path / "store", missing_ok=True)
    assert report.files_seen == 3 and report.clouds_written == 2
    assert report.failures == [(str(gone), "missing: file not found")]
    assert f"{gone}\tmissing: file not found" in (tmp_path / "store" / "failures.tsv").read_text()
    gone.write_bytes(bm5[2].read_bytes())  # the file appears: another source set
    with pytest.raises(build_mod.StoreConfigMismatch, match="sources_sha256"):
        _build([*bm5[:2], gone], tmp_path / "store", missing_ok=True)


def _truncate(path: Path, n: int) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size - n)


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda out: _truncate(out / "coords.npy", 12), "coords.npy has"),
        (lambda out: _flip_last_byte(out / "coords.npy"), "coords.npy changed since it was written"),
        (lambda out: (out / "entries.jsonl").write_text(""), "entries.jsonl has 0 bytes"),
    ],
    ids=["truncated", "flipped", "emptied"],
)
def test_a_damaged_store_of_the_same_config_is_rebuilt(bm5, tmp_path, capsys, overwrite, damage, words):
    out = tmp_path / "store"
    first = _build(bm5[:3], out)
    good = {name: (out / name).read_bytes() for name in ("coords.npy", "entries.jsonl")}
    damage(out)
    again = _build(bm5[:3], out, overwrite=overwrite)
    assert again.status == "built" and again.config_hash == first.config_hash
    err = capsys.readouterr().err
    assert f"{out} is damaged (" in err and words in err and "rebuilding" in err
    assert PointCloudStore(out, verify=True).verify_checksums()
    assert {name: (out / name).read_bytes() for name in good} == good


def test_a_store_folder_with_unreadable_meta_json_is_rebuilt_only_with_overwrite(bm5, tmp_path, capsys):
    out = tmp_path / "store"
    _build(bm5[:2], out)
    (out / "meta.json").write_text("[]")
    with pytest.raises(StoreError, match="damaged store .*meta.json.*overwrite"):
        _build(bm5[:2], out)
    assert _build(bm5[:2], out, overwrite=True).status == "built"
    assert "is damaged" in capsys.readouterr().err and PointCloudStore(out)


def _sigint_handlers(chunk):  # runs in a worker: what it does with SIGINT
    return [(item, signal.getsignal(signal.SIGINT)) for item in chunk]


def _exit_on_die(chunk):  # kills its worker on "die" in a chunk, which is then parsed in the solo process
    if "die" in chunk and len(chunk) > 1:
        os._exit(3)
    return _sigint_handlers(chunk)


def test_parser_processes_leave_ctrl_c_to_the_parent():
    """An idle worker that took SIGINT would print a traceback and break the pool."""
    from data_pipeline.build_pool import parse_in_pool

    items = [f"f{i}" for i in range(40)]
    assert {handler for _, handler in parse_in_pool(_sigint_handlers, items, 2)} == {signal.SIG_IGN}
    results = dict(parse_in_pool(_exit_on_die, ["die", *items], 2))  # its chunk again, one item at a time
    assert results["die"] == signal.SIG_IGN


def test_ctrl_c_stops_a_build_without_worker_tracebacks_or_leftovers(pdb_dir, tmp_path):
    """SIGINT to the whole process group, as Ctrl-C in a terminal sends it: the workers
    leave it to the parent, which stops, removes its temporary store and exits 130."""
    import subprocess
    import sys
    import time

    old = build_store(sorted((pdb_dir / "BM5-clean").glob("1A2K*")), tmp_path / "store", workers=1, progress=False)
    command = [sys.executable, "-m", "protein_care.cli", "build-dataset", "--source", str(pdb_dir / "BM5-clean"),
               "--out", str(tmp_path / "store"), "--overwrite", "--workers", "2", "--selection", "all",
               "--no-progress"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".store.tmp-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # until the workers are parsing into the temporary store
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err.decode() and "interrupted" in err.decode(), err.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no temporary store left
    assert PointCloudStore(tmp_path / "store", verify=True).meta["config_hash"] == old.config_hash  # untouched


def test_a_failed_rename_of_the_new_store_puts_the_old_one_back(bm5, tmp_path, monkeypatch):
    import data_pipeline.store_writer as store_writer

    old = _build(bm5[:4], tmp_path / "store")
    real_replace = os.replace

    def replace(src, dst):  # the second rename of the swap, the new store into place, fails
        if Path(dst) == tmp_path / "store" and ".store.tmp-" in Path(src).name:
            raise OSError(28, "No space left on device (simulated)")
        return real_replace(src, dst)

    monkeypatch.setattr(store_writer.os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        _build(bm5, tmp_path / "store", overwrite=True)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # nothing set aside, nothing half-written
    store = PointCloudStore(tmp_path / "store", verify=True)
    assert store.meta["config_hash"] == old.config_hash and len(store) == old.clouds_written


def test_an_old_store_set_aside_by_a_killed_build_is_put_back(bm5, tmp_path):
    import subprocess
    import sys

    old = _build(bm5[:4], tmp_path / "store")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    aside = tmp_path / f".store.old-{int(gone.stdout)}-x1y2z3"  # killed between its two renames
    aside.mkdir()
    os.replace(tmp_path / "store", aside / "store")
    again = _build(bm5[:4], tmp_path / "store")
    assert again.status == "up-to-date" and again.config_hash == old.config_hash  # back, and not rebuilt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
