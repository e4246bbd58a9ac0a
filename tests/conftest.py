"""Suite-wide checks. Tests that read the real structures skip when the folder is
absent (a checkout without ../shared); when ``PROTEIN_CARE_TEST_PDB`` names a folder
explicitly (as ``.ci/run`` does), a missing folder is an error, not 100+ silent skips."""

import os
from pathlib import Path

import pytest


def pytest_sessionstart(session):
    named = os.environ.get("PROTEIN_CARE_TEST_PDB")
    if named and not Path(named).is_dir():
        raise pytest.UsageError(f"PROTEIN_CARE_TEST_PDB={named}: no such folder (the real structures the tests read)")
