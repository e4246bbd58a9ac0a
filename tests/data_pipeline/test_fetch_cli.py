"""``protein-care fetch-pdb`` end to end, in process and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest

from data_pipeline.fetch_manifest import MANIFEST_NAME, latest_status
from data_pipeline.fetch_verify import verify_structure_file
from protein_care import cli

try:
    from . import loopback_server as lb
except ImportError:  # tests/ is not a package: pytest put this folder on sys.path
    import loopback_server as lb

pytestmark = [
    pytest.mark.skipif(not lb.have_shared_pdb(), reason="shared/pdb not found"),
    pytest.mark.timeout(90),
]

REPO = Path(__file__).resolve().parents[2]
FAST = ["--retries", "2", "--backoff", "0.01", "--timeout", "5"]


@pytest.fixture
def server():
    with lb.LoopbackRCSB(max_requests=400) as srv:
        for name in lb.REAL_FILES:
            srv.add_file(name, lb.real_file_bytes(name))
        for i in range(1, 10):  # 2AA1..2AA9: more entries, 1BNA's atoms
            srv.add_file(f"2AA{i}.cif.gz", lb.relabelled("1BNA.cif.gz", f"2AA{i}"))
        yield srv
    assert not srv.over_budget


def urls(srv: lb.LoopbackRCSB) -> list[str]:
    return ["--base-url", srv.base_url, "--holdings-url", srv.holdings_url,
            "--search-url", srv.search_url]


# Other subcommands may import torch / torch_geometric when the parser is built (many
# seconds on a loaded 2-core box). The in-process tests run cli.main with fetch_pdb as
# the only command; test_real_subprocess_run runs the full, installed CLI.
FETCH_ONLY = ("fetch_pdb",)
FETCH_ONLY_CLI = [sys.executable, "-c",
                  "import sys; from protein_care import cli; cli.COMMANDS = ('fetch_pdb',); "
                  "sys.exit(cli.main(sys.argv[1:]))"]


def main(argv: list[str]) -> int:
    """cli.main (fetch-pdb only), with argparse's SystemExit turned into its exit code."""
    with mock.patch.object(cli, "COMMANDS", FETCH_ONLY):
        try:
            return cli.main(argv)
        except SystemExit as exc:
            return int(exc.code or 0)


def test_fetch_pdb_is_registered_in_the_cli() -> None:
    assert "fetch_pdb" in cli.COMMANDS
    with mock.patch.object(cli, "COMMANDS", FETCH_ONLY):
        assert "fetch-pdb" in cli.build_parser().format_help()


def test_ids_and_ids_file_are_fetched_then_cached(server, tmp_path: Path, capsys) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# training set\n1bna\npdb_00001a7g  # extended form\n1AKI\n")
    out = tmp_path / "cache"
    argv = ["fetch-pdb", "1aki", "--ids-file", str(ids_file), "--out", str(out), *urls(server), *FAST]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "ok               3" in stdout and "entries/s" in stdout and "MB/s" in stdout
    assert sorted(p.name for p in out.glob("*.gz")) == ["1A7G.cif.gz", "1AKI.cif.gz", "1BNA.cif.gz"]
    assert main(argv) == 0
    assert "cached           3" in capsys.readouterr().out
    assert server.count("/download/") == 3


def test_rejected_ids_are_named_and_the_rest_goes_on(server, tmp_path: Path, capsys) -> None:
    code = main(["fetch-pdb", "1aki", "bogus!", "12345", "--out", str(tmp_path), *urls(server), *FAST])
    captured = capsys.readouterr()
    assert code == 1
    assert "'bogus!'" in captured.err and "'12345'" in captured.err
    assert (tmp_path / "1AKI.cif.gz").exists()


def test_failures_give_exit_1_and_are_listed(server, tmp_path: Path, capsys) -> None:
    server.add_removed("1P38", ["5UOJ"])
    code = main(["fetch-pdb", "1aki", "9zzz", "1p38", "--out", str(tmp_path), *urls(server), *FAST])
    stdout = capsys.readouterr().out
    assert code == 1
    assert "9ZZZ     missing" in stdout and "superseded by 5UOJ" in stdout
    records = latest_status(tmp_path / MANIFEST_NAME)
    assert {k: v["status"] for k, v in records.items()} == {
        "1AKI": "ok", "9ZZZ": "missing", "1P38": "obsolete"}


def test_search_flags_post_the_expected_query(server, tmp_path: Path, capsys) -> None:
    server.search_hits = ["1AKI", "1A7G", "1BNA", "2AA1"]
    argv = ["fetch-pdb", "--text", "lysozyme", "--max-resolution", "2.5",
            "--experimental-method", "X-RAY DIFFRACTION", "--limit", "3",
            "--out", str(tmp_path), *urls(server), *FAST]
    assert main(argv) == 0
    (body,) = server.search_bodies
    assert body["return_type"] == "entry"
    assert body["request_options"]["paginate"] == {"start": 0, "rows": 3}
    assert body["query"]["logical_operator"] == "and"
    assert [n["service"] for n in body["query"]["nodes"]] == ["full_text", "text", "text"]
    assert body["query"]["nodes"][1]["parameters"] == {
        "attribute": "rcsb_entry_info.resolution_combined", "operator": "less_or_equal", "value": 2.5}
    assert sorted(p.name for p in tmp_path.glob("*.gz")) == ["1A7G.cif.gz", "1AKI.cif.gz", "1BNA.cif.gz"]
    assert "search: 3 entries" in capsys.readouterr().err


def test_query_file_is_posted_as_given(server, tmp_path: Path) -> None:
    server.search_hits = ["1AKI"]
    node = {"type": "terminal", "service": "text",
            "parameters": {"attribute": "rcsb_entry_info.polymer_entity_count_DNA",
                           "operator": "greater_or_equal", "value": 1}}
    query = tmp_path / "q.json"
    sort = [{"sort_by": "rcsb_accession_info.initial_release_date", "direction": "desc"}]
    query.write_text(json.dumps({"query": node, "return_type": "entry",
                                 "request_options": {"sort": sort}}))
    assert main(["fetch-pdb", "--query", str(query), "--out", str(tmp_path / "c"), *urls(server), *FAST]) == 0
    (body,) = server.search_bodies
    assert body["query"] == node and body["request_options"]["sort"] == sort


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["1abc", "--workers", "0"], "--workers"),
        (["1abc", "--timeout", "-1"], "--timeout"),
        (["1abc", "--timeout", "nan"], "--timeout"),
        (["1abc", "--timeout", "inf"], "--timeout"),
        (["1abc", "--backoff", "NaN"], "--backoff"),
        (["--text", "x", "--max-resolution", "nan"], "--max-resolution"),
        (["1abc", "--retries", "x"], "--retries"),
        (["1abc", "--format", "mmtf"], "--format"),
        (["1abc", "--base-url", "ftp://x"], "--base-url"),
        (["1abc", "--max-resolution", "0"], "--max-resolution"),
        (["--ids-file", "/nonexistent/ids.txt"], "--ids-file"),
        (["1abc", "--mirror", "/nonexistent/mirror"], "--mirror"),
        (["1abc", "--limit", "5"], "--limit"),
        (["--query", "/nonexistent/q.json"], "--query"),
    ],
)
def test_bad_argument_stops_with_exit_2_naming_it(tmp_path: Path, capsys, extra: list[str], named: str) -> None:
    assert main(["fetch-pdb", "--out", str(tmp_path / "c"), *extra]) == 2
    assert f"argument {named}" in capsys.readouterr().err
    assert not (tmp_path / "c" / MANIFEST_NAME).exists()


def test_value_error_from_fetch_is_a_usage_error_not_a_traceback(tmp_path: Path, capsys) -> None:
    from protein_care.commands import fetch_pdb

    bad = ValueError("timeout must be > 0 seconds, got nan")
    with mock.patch.object(fetch_pdb, "fetch", side_effect=bad):
        assert main(["fetch-pdb", "1abc", "--out", str(tmp_path)]) == 2
    assert "fetch-pdb: error: timeout must be > 0 seconds, got nan" in capsys.readouterr().err


def test_search_answer_that_is_not_an_object_is_exit_3(server, tmp_path: Path, capsys) -> None:
    server.search_raw = b'["1AKI"]'
    assert main(["fetch-pdb", "--text", "x", "--out", str(tmp_path), *urls(server), *FAST]) == 3
    err = capsys.readouterr().err
    assert "unexpected answer from the search service" in err and "JSON list" in err
    assert "Traceback" not in err


def test_nothing_to_do_is_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["fetch-pdb", "--out", str(tmp_path)]) == 2
    assert "nothing to do" in capsys.readouterr().err
    assert main(["fetch-pdb", "bogus", "--out", str(tmp_path)]) == 2


def test_refused_and_unreachable_search(server, tmp_path: Path, capsys) -> None:
    server.search_status = 400
    assert main(["fetch-pdb", "--text", "x", "--out", str(tmp_path), *urls(server), *FAST]) == 2
    assert "search refused" in capsys.readouterr().err
    dead = lb.closed_port_url()
    assert main(["fetch-pdb", "--text", "x", "--out", str(tmp_path), "--search-url", dead, *FAST]) == 3


def test_progress_bar_can_be_forced(server, tmp_path: Path, capsys) -> None:
    assert main(["fetch-pdb", "1aki", "--progress", "--out", str(tmp_path), *urls(server), *FAST]) == 0
    assert "1/1" in capsys.readouterr().err


def _command() -> list[str]:
    script = Path(sys.executable).with_name("protein-care")
    return [str(script)] if script.exists() else [sys.executable, "-m", "protein_care.cli"]


def test_real_subprocess_run(server, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    proc = subprocess.run(
        [*_command(), "fetch-pdb", "1aki", "1bna", "9zzz", "--out", str(out), *urls(server), *FAST],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    assert "ok               2" in proc.stdout and "9ZZZ" in proc.stdout
    assert "%|" not in proc.stderr  # stderr is not a terminal: no progress bar


def test_killed_run_resumes_and_fetches_only_the_rest(tmp_path: Path) -> None:
    ids = [f"2AA{i}" for i in range(1, 10)]
    out = tmp_path / "cache"
    with lb.LoopbackRCSB(latency=0.25, max_requests=100) as srv:
        for pdb_id in ids:
            srv.add_file(f"{pdb_id}.cif.gz", lb.relabelled("1BNA.cif.gz", pdb_id))
        proc = subprocess.Popen(
            [*FETCH_ONLY_CLI, "fetch-pdb", *ids, "--workers", "1", "--out", str(out), *urls(srv), *FAST],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
        )
        try:
            deadline = time.monotonic() + 30
            manifest = out / MANIFEST_NAME
            while time.monotonic() < deadline and proc.poll() is None:
                if manifest.exists() and manifest.read_bytes().count(b"\n") >= 3:
                    break
                time.sleep(0.02)
            assert proc.poll() is None, "the run ended before it could be killed"
            proc.kill()  # SIGKILL: no cleanup code runs
        finally:
            proc.wait(timeout=10)
        done = sorted(p.name for p in out.glob("*.gz"))
        assert 3 <= len(done) < len(ids)
        for path in out.glob("*.gz"):
            verify_structure_file(path, "cif")  # whatever was there is valid
        srv.reset_log()
        srv.latency = 0.0
        assert main(["fetch-pdb", *ids, "--out", str(out), *urls(srv), *FAST]) == 0
        assert srv.count("/download/") == len(ids) - len(done)
    assert not list(out.glob(".*.part"))
    assert os.path.getsize(out / MANIFEST_NAME) > 0


def test_ctrl_c_waits_for_downloads_in_flight_and_a_second_one_stops_at_once(tmp_path: Path) -> None:
    import signal

    ids = ["1AKI", "1BNA"]
    out = tmp_path / "cache"
    with lb.LoopbackRCSB(max_requests=50) as srv:
        for pdb_id in ids:
            srv.add_file(f"{pdb_id}.cif.gz", lb.real_file_bytes(f"{pdb_id}.cif.gz"))
            srv.add_faults(f"{pdb_id}.cif.gz", lb.Fault("stall", delay=60))  # the body comes in a minute
        proc = subprocess.Popen(
            [*FETCH_ONLY_CLI, "fetch-pdb", *ids, "--workers", "2", "--out", str(out), *urls(srv),
             "--retries", "0", "--timeout", "120"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            while srv.count("/download/") < 2 and time.monotonic() < deadline:
                time.sleep(0.02)  # both downloads are in flight
            os.killpg(proc.pid, signal.SIGINT)
            time.sleep(1.0)
            assert proc.poll() is None  # waiting for the stalled downloads, as it said
            stopped = time.monotonic()
            os.killpg(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert time.monotonic() - stopped < 15  # not the minute of the stall
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "letting the 2 download(s) in flight finish" in err and "Ctrl-C again to stop at once" in err
    assert not list(out.glob("*.gz"))
