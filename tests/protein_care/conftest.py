"""Fixtures shared by several protein_care test modules."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def cli_runs(tmp_path_factory):
    """Tiny stores of real structures and tiny CLI-trained runs (:mod:`.tiny_cli_runs`),
    built once per session."""
    from .tiny_cli_runs import build_cli_runs

    return build_cli_runs(tmp_path_factory.mktemp("cli-runs"))
