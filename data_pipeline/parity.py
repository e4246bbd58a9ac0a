"""Compare the gemmi and Biopython backends on one file (the policy must make them agree).

Used by the parity test over shared/pdb and handy when a new file disagrees::

    python -m data_pipeline.parity FILE [FILE ...]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from data_pipeline.parse import read_selections
from data_pipeline.structure import ParseFailure, PointCloud

Key = tuple[str, int, str, str, str]  # chain, residue number, icode, residue name, atom name


def _atoms(cloud: PointCloud) -> dict[Key, np.ndarray]:
    keys = zip(
        cloud.chain_id.tolist(), cloud.res_seq.tolist(), cloud.icode.tolist(),
        cloud.res_name.tolist(), cloud.atom_name.tolist(),
    )  # fmt: skip
    return dict(zip(keys, cloud.coords))


def compare_backends(
    path: str | Path, selections: Sequence[str] = ("ca", "heavy"), tol: float = 1e-3
) -> list[str]:
    """Disagreements between the backends on ``path`` (empty when they agree).

    Both failing counts as agreement (the reasons may differ); otherwise the atom sets
    (chain, residue number, icode, residue name, atom name) must be equal and every
    coordinate within ``tol`` Angstrom.
    """
    # gemmi one selection at a time: its text pre-filter depends on the selection.
    g = {sel: read_selections(path, (sel,), backend="gemmi")[sel] for sel in selections}
    b = read_selections(path, selections, backend="biopython")
    problems: list[str] = []
    for sel in selections:
        rg, rb = g[sel], b[sel]
        if isinstance(rg, ParseFailure) or isinstance(rb, ParseFailure):
            if not (isinstance(rg, ParseFailure) and isinstance(rb, ParseFailure)):
                what_g = rg.reason if isinstance(rg, ParseFailure) else f"{len(rg)} atoms"
                what_b = rb.reason if isinstance(rb, ParseFailure) else f"{len(rb)} atoms"
                problems.append(f"{sel}: gemmi {what_g!r} vs biopython {what_b!r}")
            continue
        ag, ab = _atoms(rg), _atoms(rb)
        only_g, only_b = sorted(ag.keys() - ab.keys()), sorted(ab.keys() - ag.keys())
        if only_g or only_b:
            problems.append(
                f"{sel}: {len(ag)} vs {len(ab)} atoms; only gemmi {len(only_g)} e.g. {only_g[:3]}, "
                f"only biopython {len(only_b)} e.g. {only_b[:3]}"
            )
        common = sorted(ag.keys() & ab.keys())
        if common:
            diff = np.abs(np.stack([ag[k] for k in common]) - np.stack([ab[k] for k in common])).max(axis=1)
            worst = int(diff.argmax())
            if diff[worst] > tol:
                problems.append(f"{sel}: {int((diff > tol).sum())} coordinates differ, worst {common[worst]} by {diff[worst]:.4f} A")
    return problems


if __name__ == "__main__":
    bad = 0
    for arg in sys.argv[1:]:
        found = compare_backends(arg)
        bad += bool(found)
        print(arg, "agree" if not found else "\n  " + "\n  ".join(found))
    sys.exit(1 if bad else 0)
