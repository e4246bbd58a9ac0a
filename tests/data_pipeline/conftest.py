"""Shared fixtures of the data_pipeline tests.

Real structure files are read from ``$PROTEIN_CARE_TEST_PDB`` (default
``<repo>/../shared/pdb``, see shared/pdb/README.md) and never copied into the repository.
The parsing and store tests need them: a missing folder fails loudly instead of skipping.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def shared_pdb_dir() -> Path:
    """The folder of real structure files, from the environment or next to the repo."""
    return Path(os.environ.get("PROTEIN_CARE_TEST_PDB", REPO.parent / "shared" / "pdb"))


@pytest.fixture(scope="session")
def pdb_dir() -> Path:
    """Root of the real structure files (fails, never skips, when it is missing)."""
    root = shared_pdb_dir()
    if not (root / "MANIFEST.tsv").is_file():
        pytest.fail(
            f"real structure files not found at {root} (no MANIFEST.tsv). Set "
            "PROTEIN_CARE_TEST_PDB to the shared/pdb folder (see shared/pdb/README.md).",
            pytrace=False,
        )
    return root


@pytest.fixture(scope="session")
def pdb_manifest(pdb_dir: Path) -> list[dict[str, str]]:
    """Rows of shared/pdb/MANIFEST.tsv (relative_path, flags, n_models, ...)."""
    with open(pdb_dir / "MANIFEST.tsv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))
