"""``protein-care app``: arguments, errors that name the bad run, loopback by default,
and the real command serving the page."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from apps.trajectory_explorer import server as explorer_server
from apps.trajectory_explorer.server import is_loopback
from protein_care.cli import COMMANDS, build_parser, main

REPO = Path(__file__).resolve().parents[2]


def test_app_is_a_subcommand_with_safe_defaults():
    assert "app" in COMMANDS
    args = build_parser().parse_args(["app", "--runs", "a", "b"])
    assert args.runs == ["a", "b"] and args.host == "127.0.0.1" and args.port == 8050
    assert args.max_upload_mb == 20.0 and args.store is None and args.max_points == 20_000
    for bad in ("0", "inf", "nan", "1e-9"):  # 1e-9 MB is less than a byte
        with pytest.raises(SystemExit):
            build_parser().parse_args(["app", "--runs", "a", "--max-upload-mb", bad])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["app"])  # --runs is required


def test_dash_is_imported_only_when_the_app_runs():
    code = "import sys; from protein_care.cli import build_parser; build_parser(); print('dash' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_missing_run_exits_2_naming_it(tiny_runs, tmp_path, capsys):
    missing = tmp_path / "no-such-run"
    assert main(["app", "--runs", str(tiny_runs.care), str(missing), "--store", str(tiny_runs.store)]) == 2
    err = capsys.readouterr().err
    assert f"--runs {missing}" in err and "Traceback" not in err


def test_a_folder_that_is_not_a_run_exits_2(tiny_runs, tmp_path, capsys):
    assert main(["app", "--runs", str(tmp_path), "--store", str(tiny_runs.store)]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_a_bad_store_exits_2(tiny_runs, tmp_path, capsys):
    assert main(["app", "--runs", str(tiny_runs.care), "--store", str(tmp_path / "nothing")]) == 2
    assert "--store" in capsys.readouterr().err


def test_a_port_in_use_exits_2_naming_it(tiny_runs, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["app", "--runs", str(tiny_runs.care), "--store", str(tiny_runs.store), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"error: --port {port}: already in use on 127.0.0.1" in err and "another --port (0: a free one)" in err
    assert "is in use by another program" not in err  # werkzeug's own message, then sys.exit(1), before


class FakeServer:
    """A server that stops at once, as on Ctrl-C."""

    server_port = 8050

    def serve_forever(self):
        raise KeyboardInterrupt

    def server_close(self):
        pass


def test_runs_of_different_stores_need_store_and_are_then_marked(tiny_runs, other_store_run, monkeypatch, capsys):
    served = []

    monkeypatch.setattr(explorer_server, "make_server", lambda app, host, port: served.append(app) or FakeServer())
    runs = ["--runs", str(tiny_runs.care), str(other_store_run.run)]
    assert main(["app", *runs]) == 2 and not served
    err = capsys.readouterr().err
    assert err.startswith("error: the runs were trained on different stores") and "Pass --store STORE" in err
    assert main(["app", *runs, "--store", str(tiny_runs.store)]) == 0
    err = capsys.readouterr().err
    assert f"warning: --runs {other_store_run.run}: trained on the store {other_store_run.store}" in err
    assert "heavy atoms" in err and "care (care" not in err
    layout = str(served[0].layout())
    assert "set-transformer (care, step 2) ⚠ trained on another store (heavy atoms); shown: CA" in layout


def test_a_moved_training_store_names_the_run_not_store(tiny_runs, tmp_path, capsys):
    run = tmp_path / "moved"
    shutil.copytree(tiny_runs.care, run)
    (run / "config.json").write_text((run / "config.json").read_text().replace(str(tiny_runs.store), "/nowhere/s"))
    assert main(["app", "--runs", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run / 'config.json'} records the training store /nowhere/s, which cannot be")
    assert "pass --store STORE" in err and "error: --store" not in err


def test_loopback_addresses():
    assert all(map(is_loopback, ["127.0.0.1", "localhost", "::1", "127.0.0.2"]))
    assert not any(map(is_loopback, ["0.0.0.0", "192.168.1.5", "::", "example.org"]))


def test_a_public_host_is_served_with_a_warning(tiny_runs, monkeypatch, capsys):
    bound = []

    def fake_make_server(app, host, port):
        bound.append((host, port, app.server.config["DEBUG"]))
        return FakeServer()

    monkeypatch.setattr(explorer_server, "make_server", fake_make_server)
    assert main(["app", "--runs", str(tiny_runs.care), "--store", str(tiny_runs.store), "--host", "0.0.0.0"]) == 0
    captured = capsys.readouterr()
    assert bound == [("0.0.0.0", 8050, False)]
    assert "warning: --host 0.0.0.0 is not a loopback address" in captured.err
    assert main(["app", "--runs", str(tiny_runs.care), "--store", str(tiny_runs.store)]) == 0
    assert "warning" not in capsys.readouterr().err and bound[-1][0] == "127.0.0.1"


@pytest.mark.slow
def test_the_command_serves_the_page_on_loopback(tiny_runs):
    """``protein-care app ... --port 0`` in a subprocess: it prints its URL, which serves
    the page and its layout; the process is stopped afterwards."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "protein_care.cli", "app", "--runs", str(tiny_runs.care), str(tiny_runs.simclr),
         "--store", str(tiny_runs.store), "--port", "0"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline, url = time.monotonic() + 90, None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"protein-care app exited with {proc.returncode}: {proc.stderr.read()}")
            if m := re.search(r"open (http://127\.0\.0\.1:\d+/)", line):
                url = m.group(1)
        assert url, "protein-care app printed no URL"
        page = urllib.request.urlopen(url, timeout=30).read().decode()
        assert "<title>protein-care trajectory explorer</title>" in page
        layout = urllib.request.urlopen(url + "_dash-layout", timeout=30).read().decode()
        assert "care (care, step 3)" in layout and "simclr (simclr, step 3)" in layout
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
