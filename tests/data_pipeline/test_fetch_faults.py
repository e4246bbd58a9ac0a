"""fetch() against a loopback RCSB that misbehaves on purpose.

After every scenario: the cache holds only files that verify, transient faults end
``ok``, permanent ones are reported with their reason, and a re-run asks the server only
for what is not cached.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import pytest

from data_pipeline.fetch import LOCK_NAME, NO_PDB_FORMAT, FetchReport, fetch
from data_pipeline.fetch_manifest import MANIFEST_NAME, latest_status
from data_pipeline.fetch_verify import verify_structure_file

try:
    from . import loopback_server as lb
except ImportError:  # tests/ is not a package: pytest put this folder on sys.path
    import loopback_server as lb

Fault = lb.Fault
HTML_PAGE = lb.HTML_PAGE

pytestmark = [
    pytest.mark.skipif(not lb.have_shared_pdb(), reason="shared/pdb not found"),
    pytest.mark.timeout(60),
]

RETRIES = 3
FAST = {"retries": RETRIES, "backoff_factor": 0.01, "backoff_jitter": 0.01, "workers": 4}


@pytest.fixture
def server():
    with lb.LoopbackRCSB(max_requests=400) as srv:
        for name in lb.REAL_FILES:
            srv.add_file(name, lb.real_file_bytes(name))
        yield srv
    assert not srv.over_budget, "client exceeded the request budget"


def run(srv: lb.LoopbackRCSB, ids: list[str], out: Path, **kwargs) -> FetchReport:
    options = {**FAST, "timeout": 5.0, "base_url": srv.base_url,
               "holdings_url": srv.holdings_url, **kwargs}
    return fetch(ids, out, progress=False, **options)


def statuses(report: FetchReport) -> dict[str, str]:
    return {r.id: r.status for r in report.results}


def assert_cache_holds_only_valid_files(out: Path) -> None:
    for path in out.iterdir():
        if path.name in (MANIFEST_NAME, LOCK_NAME):
            continue
        assert not path.name.endswith(".part"), f"temporary file left: {path.name}"
        verify_structure_file(path, path.name.split(".")[1])  # raises if invalid


def assert_rerun_downloads_only(srv: lb.LoopbackRCSB, ids: list[str], out: Path,
                                expected: set[str], **kwargs) -> FetchReport:
    """Re-run and check which files were asked for again."""
    srv.reset_log()
    report = run(srv, ids, out, **kwargs)
    asked = {p.rsplit("/", 1)[-1].split(".")[0] for _, _, p in srv.requests if "/download/" in p}
    assert asked == expected
    for r in report.results:
        if r.id not in expected:
            assert r.status == "cached"
    return report


# -- transient faults: recovered --------------------------------------------------------

TRANSIENT = {
    "503_with_html_body": [Fault("status", 503, body=HTML_PAGE)],
    "html_with_200": [Fault("html200")],
    "truncated_gzip": [Fault("truncate")],
    "reset_mid_body": [Fault("reset")],
    "stall_before_headers": [Fault("stall", delay=2.5)],
    "stall_mid_body": [Fault("stall_body", delay=2.5)],
    "several_in_a_row": [Fault("reset"), Fault("html200"), Fault("status", 502)],
}


@pytest.mark.parametrize("scenario", sorted(TRANSIENT))
def test_transient_fault_is_retried_to_ok(server, tmp_path: Path, scenario: str) -> None:
    faults = TRANSIENT[scenario]
    server.add_faults("1AKI.cif.gz", *faults)
    timeout = 1.0 if "stall" in scenario else 5.0
    report = run(server, ["1aki", "1bna"], tmp_path, timeout=timeout)
    assert statuses(report) == {"1AKI": "ok", "1BNA": "ok"}, report.results
    assert server.count("/download/1AKI.cif.gz") == len(faults) + 1
    assert server.count("/download/1BNA.cif.gz") == 1
    assert report.results[0].sha256 and report.results[0].bytes == len(server.files["1AKI.cif.gz"])
    assert_cache_holds_only_valid_files(tmp_path)
    assert_rerun_downloads_only(server, ["1aki", "1bna"], tmp_path, expected=set())


def test_429_honours_retry_after(server, tmp_path: Path) -> None:
    server.add_faults("1AKI.cif.gz", Fault("status", 429, headers={"Retry-After": "1"}))
    report = run(server, ["1aki"], tmp_path)
    assert statuses(report) == {"1AKI": "ok"}
    first, second = server.times("/download/1AKI.cif.gz")
    assert second - first >= 0.95  # waited as told, not the 0.01 s backoff
    assert report.results[0].elapsed_s >= 0.95


# -- persistent faults: reported --------------------------------------------------------

@pytest.mark.parametrize(
    ("fault", "status", "reason"),
    [
        (Fault("html200", sticky=True), "invalid", "not a gzip stream"),
        (Fault("truncate", sticky=True), "invalid", "truncated"),
        (Fault("status", 503, body=HTML_PAGE, sticky=True), "failed", "HTTP 503"),
        (Fault("reset", sticky=True), "failed", "body interrupted"),
    ],
    ids=["always_html", "always_truncated", "always_503", "always_reset"],
)
def test_persistent_fault_exhausts_retries_and_is_reported(
    server, tmp_path: Path, fault: Fault, status: str, reason: str
) -> None:
    server.add_faults("1AKI.cif.gz", fault)
    report = run(server, ["1aki", "1bna"], tmp_path)
    result = report.results[0]
    assert (result.status, result.path) == (status, None)
    assert reason in result.reason
    assert server.count("/download/1AKI.cif.gz") == RETRIES + 1
    assert not (tmp_path / "1AKI.cif.gz").exists()
    assert_cache_holds_only_valid_files(tmp_path)
    assert latest_status(tmp_path / MANIFEST_NAME)["1AKI"]["status"] == status
    assert_rerun_downloads_only(server, ["1aki", "1bna"], tmp_path, expected={"1AKI"})


def test_404_is_missing_without_retries(server, tmp_path: Path) -> None:
    report = run(server, ["9zzz"], tmp_path)
    assert statuses(report) == {"9ZZZ": "missing"}
    assert "HTTP 404" in report.results[0].reason
    assert server.count("/download/9ZZZ.cif.gz") == 1
    assert server.count("/holdings/removed/9ZZZ") == 1
    assert_cache_holds_only_valid_files(tmp_path)
    assert_rerun_downloads_only(server, ["9zzz"], tmp_path, expected={"9ZZZ"})


def test_404_of_a_superseded_entry_is_obsolete(server, tmp_path: Path) -> None:
    server.add_removed("1P38", replaced_by=["5UOJ"])
    server.add_removed("1OLD")
    report = run(server, ["1p38", "1old"], tmp_path)
    by_id = {r.id: r for r in report.results}
    assert by_id["1P38"].status == "obsolete" and by_id["1P38"].reason == "superseded by 5UOJ"
    assert by_id["1OLD"].status == "obsolete" and "no successor" in by_id["1OLD"].reason
    assert server.count("/download/1P38.cif.gz") == 1
    assert_cache_holds_only_valid_files(tmp_path)
    assert latest_status(tmp_path / MANIFEST_NAME)["1P38"]["reason"] == "superseded by 5UOJ"


def test_404_for_pdb_format_explains_mmcif_only_entries(server, tmp_path: Path) -> None:
    report = run(server, ["1a7g", "1aki"], tmp_path, format="pdb")  # no 1A7G.pdb.gz served
    by_id = {r.id: r for r in report.results}
    assert by_id["1AKI"].status == "ok" and (tmp_path / "1AKI.pdb.gz").exists()
    assert by_id["1A7G"].status == "missing"
    assert NO_PDB_FORMAT in by_id["1A7G"].reason and "--format cif" in by_id["1A7G"].reason


def test_holdings_answer_with_a_non_string_date_is_still_obsolete(server, tmp_path: Path) -> None:
    server.removed["1HL2"] = {"rcsb_repository_holdings_removed": {"id_codes_replaced_by": None,
                                                                   "remove_date": 12345}}
    report = run(server, ["1hl2"], tmp_path)
    assert statuses(report) == {"1HL2": "obsolete"}
    assert report.results[0].reason == "removed from the PDB on 12345, no successor"


def test_another_entrys_file_is_invalid_and_not_stored(server, tmp_path: Path) -> None:
    server.add_file("1OK2.cif.gz", server.files["1A7G.cif.gz"])
    server.add_file("1OK3.pdb.gz", server.files["1AKI.pdb.gz"])
    report = run(server, ["1ok2"], tmp_path)
    pdb = run(server, ["1ok3"], tmp_path, format="pdb")
    assert server.count("1OK2.cif.gz", "GET") == 1 and server.count("1OK3.pdb.gz", "GET") == 1  # not retried
    for result, got, want in ((report.results[0], "1A7G", "1OK2"), (pdb.results[0], "1AKI", "1OK3")):
        assert result.status == "invalid"
        assert f"file is entry '{got}'" in result.reason and f"not the requested {want}" in result.reason
    assert not (tmp_path / "1OK2.cif.gz").exists() and not (tmp_path / "1OK3.pdb.gz").exists()
    assert_cache_holds_only_valid_files(tmp_path)


@pytest.mark.parametrize("fmt", ["cif", "pdb"])
def test_text_cut_at_a_row_boundary_and_recompressed_is_invalid(server, tmp_path: Path, fmt: str) -> None:
    text = gzip.decompress(server.files[f"1AKI.{fmt}.gz"])
    cut = [m.start() for m in re.finditer(rb"\nATOM", text)][40] + 1  # after 40 atom rows
    server.add_file(f"1AKI.{fmt}.gz", gzip.compress(text[:cut]))
    report = run(server, ["1aki"], tmp_path, format=fmt)
    assert statuses(report) == {"1AKI": "invalid"}
    assert ("row boundary" if fmt == "cif" else "END record") in report.results[0].reason
    assert server.count(f"/download/1AKI.{fmt}.gz") == RETRIES + 1  # retried like any bad body
    assert not (tmp_path / f"1AKI.{fmt}.gz").exists()


def test_unreachable_holdings_service_still_reports_missing(server, tmp_path: Path) -> None:
    report = run(server, ["9zzz"], tmp_path, holdings_url=lb.closed_port_url(), retries=1)
    assert statuses(report) == {"9ZZZ": "missing"}
    assert "holdings lookup failed" in report.results[0].reason


def test_server_down_is_failed(tmp_path: Path) -> None:
    url = lb.closed_port_url()
    report = fetch(["1aki", "1bna"], tmp_path, base_url=url, holdings_url=url,
                   progress=False, timeout=1.0, **FAST)
    assert statuses(report) == {"1AKI": "failed", "1BNA": "failed"}
    assert all("Connection" in r.reason or "refused" in r.reason for r in report.results)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([MANIFEST_NAME, LOCK_NAME])
    assert not report.ok


# -- cache and resume ---------------------------------------------------------------------

def test_mixed_batch_then_rerun_fetches_only_what_is_missing(server, tmp_path: Path) -> None:
    cif_files = [name for name in sorted(lb.REAL_FILES) if name.endswith(".cif.gz")]
    for i, name in enumerate(["2AAA", "2AAB", "2AAC", "2AAD", "2AAE", "2AAF"]):
        server.add_file(f"{name}.cif.gz", lb.relabelled(cif_files[i % len(cif_files)], name))
    server.add_faults("2AAA.cif.gz", Fault("reset"))
    server.add_faults("2AAB.cif.gz", Fault("status", 429, headers={"Retry-After": "0"}))
    server.add_faults("2AAC.cif.gz", Fault("html200", sticky=True))
    server.add_removed("1P38", ["5UOJ"])
    ids = ["2aaa", "2aab", "2aac", "2aad", "2aae", "2aaf", "1p38", "9zzz", "1aki"]
    report = run(server, ids, tmp_path)
    assert report.counts == {"ok": 6, "cached": 0, "missing": 1, "obsolete": 1,
                             "invalid": 1, "failed": 0}
    assert_cache_holds_only_valid_files(tmp_path)
    records = latest_status(tmp_path / MANIFEST_NAME)
    assert {i: r["status"] for i, r in records.items()} == statuses(report)
    assert all(Path(records[r.id]["path"]).is_file() for r in report.results if r.status == "ok")
    second = assert_rerun_downloads_only(server, ids, tmp_path, expected={"2AAC", "1P38", "9ZZZ"})
    assert second.counts["cached"] == 6


def test_corrupt_cached_file_is_fetched_again(server, tmp_path: Path) -> None:
    good = server.files["1AKI.cif.gz"]
    (tmp_path / "1AKI.cif.gz").write_bytes(good[: len(good) // 3])  # e.g. copied by hand, cut
    (tmp_path / "1BNA.cif.gz").write_bytes(server.files["1BNA.cif.gz"])  # valid: kept
    report = run(server, ["1aki", "1bna"], tmp_path)
    assert statuses(report) == {"1AKI": "ok", "1BNA": "cached"}
    assert "cached file was corrupt" in report.results[0].reason
    assert (tmp_path / "1AKI.cif.gz").read_bytes() == good
    assert server.count("/download/") == 1


def test_cached_file_of_another_entry_is_fetched_again(server, tmp_path: Path) -> None:
    (tmp_path / "1AKI.cif.gz").write_bytes(server.files["1BNA.cif.gz"])
    report = run(server, ["1aki"], tmp_path)
    assert statuses(report) == {"1AKI": "ok"}
    assert "cached file was corrupt (file is entry '1BNA'" in report.results[0].reason
    assert (tmp_path / "1AKI.cif.gz").read_bytes() == server.files["1AKI.cif.gz"]


def test_killed_run_leftovers_do_not_break_a_resume(server, tmp_path: Path) -> None:
    (tmp_path / "1BNA.cif.gz").write_bytes(server.files["1BNA.cif.gz"])  # finished before kill
    (tmp_path / ".1AKI.cif.gz.x1y2.part").write_bytes(b"\x1f\x8b partial")  # being written
    (tmp_path / MANIFEST_NAME).write_bytes(b'{"id":"1BNA","status":"ok","path":"1BNA.cif.gz"}\n{"id":"1A')
    report = run(server, ["1aki", "1bna"], tmp_path)
    assert statuses(report) == {"1AKI": "ok", "1BNA": "cached"}
    assert server.count("/download/") == 1
    lines = (tmp_path / MANIFEST_NAME).read_bytes().split(b"\n")
    assert [json.loads(x)["id"] for x in lines[2:] if x] in (["1AKI", "1BNA"], ["1BNA", "1AKI"])
    verify_structure_file(tmp_path / "1AKI.cif.gz", "cif")


def test_bad_arguments_raise_value_errors_naming_them(tmp_path: Path) -> None:
    for kwargs, name in [({"workers": 0}, "workers"), ({"timeout": 0}, "timeout"),
                         ({"retries": -1}, "retries"), ({"format": "mmtf"}, "format"),
                         ({"mirror": tmp_path / "nope"}, "mirror")]:
        with pytest.raises(ValueError, match=name):
            fetch(["1abc"], tmp_path, progress=False, **kwargs)


def test_temporary_files_of_a_concurrent_run_are_left_alone(server, tmp_path: Path) -> None:
    fcntl = pytest.importorskip("fcntl")
    other_part = tmp_path / ".1BNA.cif.gz.abcd.part"  # being written by another process
    other_part.write_bytes(b"\x1f\x8b")
    fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the "other process" holds the lock
        report = run(server, ["1aki"], tmp_path)
        assert statuses(report) == {"1AKI": "ok"}
        assert other_part.exists()
    finally:
        os.close(fd)
    run(server, ["1aki"], tmp_path)  # nobody holds it now: leftovers are cleaned
    assert not other_part.exists()


def test_a_fetch_that_holds_the_lock_keeps_the_parts_of_writers_that_still_run(server, tmp_path: Path) -> None:
    """A fetch started while another held the lock writes without it; a third fetch that
    takes the lock later must not delete what the second one is writing."""
    import subprocess
    import sys

    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    alive_part = tmp_path / f".1BNA.cif.gz.{os.getpid()}.0a1b2c3d.part"  # this process: still writing
    dead_part = tmp_path / f".1BNA.cif.gz.{gone}.4e5f6a7b.part"  # a killed run's litter
    for part in (alive_part, dead_part):
        part.write_bytes(b"\x1f\x8b")
    run(server, ["1aki"], tmp_path)  # nobody else holds the lock: this run takes it
    assert alive_part.exists() and not dead_part.exists()
