"""PDB entry identifiers and where their files live.

A PDB ID is four characters, a digit 1-9 then three letters or digits (``1abc``). The
wwPDB's extended form ``pdb_0000xxxx`` names the same entry; both are accepted here and
normalised to the upper-case four-character ID (``1ABC``), which is what the RCSB file
service and the wwPDB mirrors use in file names today. Extended IDs whose first four
digits are not ``0000`` are not yet issued and have no file layout, so they are rejected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "FORMATS",
    "normalize_pdb_id",
    "parse_id_lines",
    "read_ids_file",
    "remote_file_name",
    "mirror_candidates",
    "split_valid_ids",
]

# Accepted file formats: the CLI's --format values, each served gzipped.
FORMATS: tuple[str, ...] = ("cif", "pdb")

_CLASSIC = re.compile(r"^[1-9][0-9A-Za-z]{3}$")
_EXTENDED = re.compile(r"^pdb_([0-9A-Za-z]{8})$", re.IGNORECASE)


def normalize_pdb_id(raw: str) -> str:
    """Return the canonical upper-case four-character form of a PDB ID.

    Args:
        raw: ``1abc``, ``1ABC`` or the extended ``pdb_00001abc`` (any case, surrounding
            whitespace ignored).

    Returns:
        The ID as four upper-case characters, e.g. ``"1ABC"``.

    Raises:
        ValueError: when ``raw`` is not a PDB ID; the message names it.
    """
    text = raw.strip()
    if _CLASSIC.match(text):
        return text.upper()
    extended = _EXTENDED.match(text)
    if extended:
        digits = extended.group(1)
        if digits.startswith("0000") and _CLASSIC.match(digits[4:]):
            return digits[4:].upper()
        raise ValueError(
            f"{raw!r}: extended PDB IDs are only supported as pdb_0000xxxx "
            "(no file layout exists yet for longer IDs)"
        )
    raise ValueError(
        f"{raw!r} is not a PDB ID (expected 4 characters like 1ABC, or pdb_00001abc)"
    )


def split_valid_ids(raw_ids: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Normalise many IDs, dropping duplicates (first occurrence wins).

    Args:
        raw_ids: IDs in any accepted spelling.

    Returns:
        ``(valid, rejected)``: the normalised unique IDs in input order, and
        ``(raw, reason)`` for every input that is not a PDB ID.
    """
    valid: list[str] = []
    seen: set[str] = set()
    rejected: list[tuple[str, str]] = []
    for raw in raw_ids:
        try:
            pdb_id = normalize_pdb_id(raw)
        except ValueError as exc:
            rejected.append((raw, str(exc)))
            continue
        if pdb_id not in seen:
            seen.add(pdb_id)
            valid.append(pdb_id)
    return valid, rejected


def parse_id_lines(lines: Iterable[str]) -> list[str]:
    """Extract raw IDs from text lines: one or more per line (split on whitespace or
    commas), ``#`` starts a comment, blank lines are skipped. IDs are not validated."""
    out: list[str] = []
    for line in lines:
        content = line.split("#", 1)[0]
        out.extend(tok for tok in re.split(r"[\s,]+", content) if tok)
    return out


def read_ids_file(path: str | Path) -> list[str]:
    """Read raw IDs from a text file (see :func:`parse_id_lines`).

    Args:
        path: the file; ``OSError`` propagates when it cannot be read.
    """
    with open(path, encoding="utf-8") as fh:
        return parse_id_lines(fh)


def remote_file_name(pdb_id: str, fmt: str) -> str:
    """File name on the RCSB file service: ``1ABC.cif.gz`` or ``1ABC.pdb.gz``.

    Args:
        pdb_id: a normalised ID (see :func:`normalize_pdb_id`).
        fmt: ``"cif"`` or ``"pdb"``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    return f"{pdb_id}.{fmt}.gz"


def mirror_candidates(mirror: str | Path, pdb_id: str, fmt: str) -> list[Path]:
    """Paths where a wwPDB mirror in the *divided* layout keeps an entry.

    The divided layout groups entries by the middle two characters of the lower-case ID:
    ``mmCIF/ab/1abc.cif.gz`` and ``pdb/ab/pdb1abc.ent.gz``. Both a mirror of
    ``data/structures/divided`` itself and a mirror of the whole archive root (where
    those folders sit under ``data/structures/divided/``) are looked in.

    Args:
        mirror: the mirror's root folder.
        pdb_id: a normalised ID.
        fmt: ``"cif"`` or ``"pdb"``.

    Returns:
        Candidate paths, most specific first; none of them need exist.
    """
    low = pdb_id.lower()
    middle = low[1:3]
    if fmt == "cif":
        rel = Path("mmCIF", middle, f"{low}.cif.gz")
    elif fmt == "pdb":
        rel = Path("pdb", middle, f"pdb{low}.ent.gz")
    else:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    root = Path(mirror)
    return [root / rel, root / "data" / "structures" / "divided" / rel]
