"""``protein-care demo`` without local structures: the fetch of its fixed PDB list is
simulated (monkeypatched ``data_pipeline.fetch.fetch``), never sent to the network."""

from __future__ import annotations

from pathlib import Path

import pytest

import data_pipeline.fetch as fetch_mod
import protein_care.demo as demo_mod
from data_pipeline.fetch_report import FetchReport, FetchResult
from protein_care.cli import main


def offline_fetch(calls: list):
    """A ``fetch`` that fails every entry as an offline machine's does."""

    def fake(pdb_ids, out_dir, **kwargs):
        calls.append((list(pdb_ids), Path(out_dir)))
        reason = "ConnectionError: [Errno -3] Temporary failure in name resolution\n(retries exhausted)"
        return FetchReport(results=[FetchResult(i.upper(), "failed", reason) for i in pdb_ids])

    return fake


@pytest.fixture
def no_local_structures(monkeypatch):
    """No --pdb-dir, no $PROTEIN_CARE_TEST_PDB and no ../shared/pdb: the demo must fetch."""
    monkeypatch.setattr(demo_mod, "find_pdb_dir", lambda explicit=None: None)
    calls: list = []
    monkeypatch.setattr(fetch_mod, "fetch", offline_fetch(calls))
    return calls


def test_an_offline_demo_without_structures_says_what_to_do_in_one_line(no_local_structures, tmp_path, capsys):
    out = tmp_path / "demo-out"
    code = main(["demo", "--out", str(out), "--device", "cpu", "--no-tradeoff"])
    captured = capsys.readouterr()
    assert code == 1
    assert no_local_structures == [(demo_mod.demo_ids(), out / "pdb-cache")]  # the shipped list was asked for
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err  # one line, no traceback
    for hint in ("--pdb-dir", "PROTEIN_CARE_TEST_PDB", "online", "name resolution"):
        assert hint in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert not (out / "store").exists() and not (out / "runs").exists()  # it stopped before building anything


def test_the_fetch_step_goes_on_when_some_entries_arrive(monkeypatch, tmp_path):
    ids = demo_mod.demo_ids()

    def partial(pdb_ids, out_dir, **kwargs):
        first = Path(out_dir) / f"{ids[0].upper()}.cif.gz"
        return FetchReport(results=[FetchResult(ids[0].upper(), "ok", path=first)]
                           + [FetchResult(i.upper(), "failed", "timeout") for i in ids[1:]])

    monkeypatch.setattr(fetch_mod, "fetch", partial)
    assert demo_mod._fetch_demo_structures(tmp_path / "cache", log=lambda *_: None) == tmp_path / "cache"
    monkeypatch.setattr(fetch_mod, "fetch", offline_fetch([]))
    with pytest.raises(demo_mod.StructuresUnavailable, match="none of the demo's .* PDB entries could be fetched"):
        demo_mod._fetch_demo_structures(tmp_path / "cache", log=lambda *_: None)


def test_demo_help_names_every_run_it_trains(capsys):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, _ in demo_mod.DEMO_RUNS:
        assert name in text, name
    for lam in (*demo_mod.TRADEOFF_LAMBDAS, dict(demo_mod.DEMO_RUNS)[demo_mod.TRADEOFF_RUN]["lam"]):
        assert f"λ = {lam:g}" in text, lam
