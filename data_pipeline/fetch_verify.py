"""Is this a usable structure file? Checks for downloaded and cached ``.gz`` files.

A file passes only when (1) it is a complete gzip stream (decompressed in full, so the
CRC-32 and length trailer are checked), (2) it decompresses to something non-empty and
(3) gemmi parses that text as a structure with at least one atom. A non-empty file is
not a valid one: an HTML error page served with status 200, a truncated transfer and a
file cut by a killed process all fail here.

This module uses gemmi directly on purpose: it answers only "does this parse", and stays
independent of :mod:`data_pipeline.structure`.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import gemmi

__all__ = ["VerificationError", "verify_structure_bytes", "verify_structure_file"]

_GZIP_MAGIC = b"\x1f\x8b"


class VerificationError(Exception):
    """A file or downloaded body is not a complete, parseable structure."""


def _count_atoms(structure: gemmi.Structure) -> int:
    return sum(model.count_atom_sites() for model in structure)


def verify_structure_bytes(data: bytes, fmt: str) -> int:
    """Check that ``data`` is a gzipped structure file of format ``fmt``.

    Args:
        data: the compressed bytes exactly as stored or served.
        fmt: ``"cif"`` (PDBx/mmCIF) or ``"pdb"`` (legacy PDB format).

    Returns:
        The number of atom sites gemmi read (>= 1).

    Raises:
        VerificationError: with a short reason (empty, not gzip, truncated, bad CRC,
            does not parse, no atoms).
    """
    if fmt not in ("cif", "pdb"):
        raise ValueError(f"format must be 'cif' or 'pdb', got {fmt!r}")
    if not data:
        raise VerificationError("empty file")
    if data[:2] != _GZIP_MAGIC:
        raise VerificationError(f"not a gzip stream (starts with {data[:16]!r})")
    try:
        text = gzip.decompress(data)  # reads to the end: checks CRC-32 and ISIZE
    except EOFError:
        raise VerificationError("gzip stream is truncated") from None
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise VerificationError(f"corrupt gzip stream: {exc}") from None
    if not text or text.isspace():
        raise VerificationError("decompresses to an empty file")
    try:
        if fmt == "cif":
            doc = gemmi.cif.read_string(text)
            if len(doc) == 0:
                raise VerificationError("mmCIF has no data block")
            structure = gemmi.make_structure_from_block(doc[0])
        else:
            structure = gemmi.read_pdb_string(text)
    except (RuntimeError, ValueError) as exc:  # gemmi reports syntax errors as these
        raise VerificationError(f"does not parse as {fmt}: {exc}") from None
    n_atoms = _count_atoms(structure)
    if n_atoms < 1:
        raise VerificationError(f"parses as {fmt} but holds no atoms")
    return n_atoms


def verify_structure_file(path: str | Path, fmt: str) -> int:
    """Check a ``.gz`` structure file on disk; see :func:`verify_structure_bytes`.

    Args:
        path: the file.
        fmt: ``"cif"`` or ``"pdb"``.

    Returns:
        The number of atom sites.

    Raises:
        VerificationError: the file is not a valid structure (or cannot be read).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise VerificationError(f"cannot read: {exc}") from None
    return verify_structure_bytes(data, fmt)
