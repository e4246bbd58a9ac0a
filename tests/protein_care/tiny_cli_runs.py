"""Tiny stores of real structures and tiny runs trained through the CLI, for the
``compare`` and ``plot`` tests (a few seconds to build).

Real structure files are read from ``$PROTEIN_CARE_TEST_PDB`` (default
``<repo>/../shared/pdb``); a missing folder fails loudly.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from protein_care.cli import main

from .synthetic_store import pdb_folder

#: Tiny encoders and a few steps; no snapshots (compare evaluates each one).
TINY_TRAIN = ["--hidden", "16", "--dim", "8", "--phi-layers", "1", "--rho-layers", "1", "--batch-size", "8",
              "--n-split", "2", "--train-points", "64", "--max-steps", "3", "--snapshots", "0", "--device", "cpu",
              "--no-progress"]


@dataclass(frozen=True)
class CliRuns:
    base: Path  # the folder the runs were trained from (with relative --store paths)
    store: Path  # CA atoms of 20 unbound structures, a large test split
    store_heavy: Path  # heavy atoms of 6 structures
    store1: Path  # one cloud
    care: Path  # base/runs/x/care: trained with `--store store` from base
    simclr: Path  # base/runs/simclr, same store
    care_copy: Path  # base/runs/y/care: a copy of `care` (same folder name)
    care_eq: Path  # base/runs/lam=1/care: a copy of `care` (a path holding '=')
    heavy: Path  # base/runs/heavy: trained on store_heavy


def build_cli_runs(base: Path) -> CliRuns:
    from data_pipeline.build import build_store

    files = sorted((pdb_folder() / "BM5-clean").glob("*_u.pdb.gz"))[:20]
    if len(files) < 20:
        pytest.fail(f"real structures not found in {pdb_folder() / 'BM5-clean'}: set PROTEIN_CARE_TEST_PDB",
                    pytrace=False)
    stores = {"store": ("ca", files), "store-heavy": ("heavy", files[:6]), "store1": ("ca", files[:1])}
    for name, (selection, chosen) in stores.items():
        build_store([str(f) for f in chosen], base / name, selection=selection, workers=1, progress=False,
                    split_fractions=(0.5, 0.1, 0.4))
    cwd = Path.cwd()
    os.chdir(base)  # the runs record `--store store` as typed, relative to base
    try:
        for out, store, extra in (("runs/x/care", "store", []), ("runs/simclr", "store", ["--loss", "simclr"]),
                                  ("runs/heavy", "store-heavy", ["--split", "all", "--batch-size", "4"])):
            assert main(["train", "--store", store, "--out", out, *TINY_TRAIN, *extra]) == 0, out
    finally:
        os.chdir(cwd)
    for copy in ("runs/y/care", "runs/lam=1/care"):
        shutil.copytree(base / "runs/x/care", base / copy)
    return CliRuns(base, base / "store", base / "store-heavy", base / "store1", base / "runs/x/care",
                   base / "runs/simclr", base / "runs/y/care", base / "runs/lam=1/care", base / "runs/heavy")
