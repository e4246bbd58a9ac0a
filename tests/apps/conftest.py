"""Shared fixtures of the app tests: a store of real structures, two tiny trained runs
(CARE and SimCLR) and the CARE run's metrics.json — built once per session.

Real structure files are read from ``$PROTEIN_CARE_TEST_PDB`` (default
``<repo>/../shared/pdb``) and never copied into the repository; a missing folder fails
loudly instead of skipping.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.apps.browser import browser, downloads, screenshots  # noqa: F401 - fixtures of the browser tests

REPO = Path(__file__).resolve().parents[2]
N_STORE_FILES = 20


def pdb_root() -> Path:
    return Path(os.environ.get("PROTEIN_CARE_TEST_PDB", REPO.parent / "shared" / "pdb"))


@dataclass(frozen=True)
class TinyRuns:
    store: Path
    care: Path
    simclr: Path
    pdb: Path  # root of the real structure files

    @property
    def runs(self) -> list[Path]:
        return [self.care, self.simclr]


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> TinyRuns:
    """20 unbound BM5 structures as a CA store; 3-step CARE and SimCLR runs on it
    (logging every step); ``evaluate_run`` of the CARE run written to its metrics.json.
    The SimCLR run is left unevaluated (the page must say how to evaluate it)."""
    from data_pipeline.build import build_store
    from protein_care.evaluation.evaluate import evaluate_run, write_metrics
    from protein_care.training import train

    root = pdb_root()
    files = sorted((root / "BM5-clean").glob("*_u.pdb.gz"))[:N_STORE_FILES]
    if len(files) < N_STORE_FILES:
        pytest.fail(f"real structure files not found in {root / 'BM5-clean'}: set PROTEIN_CARE_TEST_PDB "
                    "to the shared/pdb folder", pytrace=False)
    base = tmp_path_factory.mktemp("explorer")
    store = base / "store"
    build_store(files, store, selection="ca", workers=1, progress=False)
    runs = {}
    for loss in ("care", "simclr"):
        out = base / loss
        train({"store": str(store), "out": str(out), "max_steps": 3, "batch_size": 8, "n_split": 2, "hidden": 32,
               "dim": 16, "device": "cpu", "progress": False, "loss": loss, "log_every": 1})
        runs[loss] = out
    result = evaluate_run(runs["care"], None, split="all", n_rotations=3, probe_rotations=2, retrieval_draws=1,
                          n_compositions=2, mlp_probe=False)
    write_metrics(result, runs["care"] / "metrics.json")
    return TinyRuns(store, runs["care"], runs["simclr"], root)


@dataclass(frozen=True)
class OtherStoreRun:
    store: Path  # heavy atoms of a few structures
    run: Path  # a set-transformer trained on it


@pytest.fixture(scope="session")
def other_store_run(tiny_runs, tmp_path_factory) -> OtherStoreRun:
    """A 2-step set-transformer run (4 heads) trained on a heavy-atom store of 6 real
    structures (128 points per cloud in training): another store and selection than
    ``tiny_runs``'s."""
    from data_pipeline.build import build_store
    from protein_care.training import train

    files = sorted((tiny_runs.pdb / "BM5-clean").glob("*_u.pdb.gz"))[:6]
    base = tmp_path_factory.mktemp("other-store")
    store = base / "store-heavy"
    build_store(files, store, selection="heavy", workers=1, progress=False)
    out = base / "set-transformer"
    train({"store": str(store), "out": str(out), "max_steps": 2, "batch_size": 4, "n_split": 2, "hidden": 16,
           "dim": 8, "heads": 4, "encoder": "set-transformer", "train_points": 128, "device": "cpu",
           "progress": False, "loss": "care", "log_every": 1})
    return OtherStoreRun(store, out)
