"""Deterministic train/val/test splits by a stable hash of a group key.

Rule
----
Every cloud gets the split of its **group key**, so that clouds that are not independent
land together:

* the group key of a benchmark file named ``<ID>_<anything>`` or ``<ID>-<anything>``
  (``1A2K_r_u.pdb``, ``1A2K_l_b-matched.pdb``, ``2r6g-TM_bound.pdb``) is the complex ID
  before the first underscore (or dash), upper-cased, when it looks like a PDB ID (a
  digit and three alphanumerics). The unbound partners of a complex come from *other*
  PDB entries, so the file name, not the entry ID inside, must decide;
* otherwise the group key is the entry ID read from the file (``PointCloud.id``),
  upper-cased; all chains of one entry (``per_chain=True``) share it;
* failing both, the file stem.

:func:`assign_split` maps a key to a split with the first 64 bits of its sha256, so the
split of a key never depends on which other keys exist: adding entries never moves
existing ones.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

SPLIT_NAMES = ("train", "val", "test")
_COMPLEX_PREFIX = re.compile(r"^([0-9][A-Za-z0-9]{3})[_\-]")
_PDB_ID = re.compile(r"^[0-9][A-Za-z0-9]{3}$")


def group_key(file_stem: str, entry_id: str | None = None) -> str:
    """The key that decides the split of a cloud (see the module rule)."""
    m = _COMPLEX_PREFIX.match(file_stem)
    if m:
        return m.group(1).upper()
    if entry_id:
        return entry_id.upper()
    return file_stem


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validate (train, val, test) fractions: three non-negative numbers summing to 1."""
    fr = tuple(float(f) for f in fractions)
    if len(fr) != len(SPLIT_NAMES):
        raise ValueError(f"split fractions must be 3 numbers (train, val, test), got {len(fr)}")
    if any(not math.isfinite(f) or f < 0 for f in fr):
        raise ValueError(f"split fractions must be finite and >= 0, got {fr}")
    if abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {fr} (sum {sum(fr):g})")
    return fr  # type: ignore[return-value]


def split_point(key: str) -> float:
    """A uniform number in [0, 1) from the sha256 of ``key``."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(entry_key: str, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for a group key, stable across builds."""
    fr = check_fractions(fractions)
    u = split_point(entry_key)
    edge = 0.0
    for name, f in zip(SPLIT_NAMES, fr):
        edge += f
        if u < edge:
            return name
    return next(n for n, f in zip(reversed(SPLIT_NAMES), reversed(fr)) if f > 0)
