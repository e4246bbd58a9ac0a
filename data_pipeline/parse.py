"""Read structure files into :class:`~data_pipeline.structure.PointCloud` objects.

The policy (first model, altlocs, hydrogens, waters, what counts as protein) is written
in :mod:`data_pipeline.structure` and applied identically to both backends: ``gemmi``
(default, fast) and ``biopython`` (reference). Input files are recognised by content
(:mod:`data_pipeline.sniff`): ``.cif``, ``.cif.gz``, ``.pdb``, ``.ent`` and their gzipped
forms, whatever their names. The path of one file: read and check the bytes (sniff),
cut the text to model 1 (:mod:`data_pipeline.trim`), let the backend list the atoms of
model 1 (``read_table``), apply the policy (``apply_policy``).

Example::

    cloud = read_structure("1l2y.pdb.gz", selection="ca")   # raises StructureError
    result = try_read_structure(path)                       # PointCloud | ParseFailure
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from data_pipeline import sniff
from data_pipeline.structure import (
    SELECTIONS,
    ParseFailure,
    PointCloud,
    StructureError,
    apply_policy,
    prefilter,
)
from data_pipeline.trim import trim

BACKENDS = ("gemmi", "biopython")
DEFAULT_MAX_BYTES = sniff.DEFAULT_MAX_BYTES
_MAX_REASON = 300


def _backend(name: str) -> Any:
    if name == "gemmi":
        from data_pipeline import parse_gemmi

        return parse_gemmi
    if name == "biopython":
        from data_pipeline import parse_biopython

        return parse_biopython
    raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")


def check_options(backend: str, selection: str, include_waters: bool, include_hydrogens: bool) -> None:
    """Raise ``ValueError`` naming the bad argument."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if (include_waters or include_hydrogens) and selection != "all":
        raise ValueError("include_waters/include_hydrogens apply to selection='all' only")


def backend_version(backend: str) -> str:
    """Version of the library behind ``backend`` (with a ``+N`` revision of this
    project's reading of it, where that changed)."""
    return str(_backend(backend).VERSION)


def read_selections(
    path: str | Path,
    selections: Iterable[str],
    *,
    backend: str = "gemmi",
    include_waters: bool = False,
    include_hydrogens: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[str, PointCloud | ParseFailure]:
    """Parse ``path`` once and apply several selections (e.g. ``("ca", "heavy")``).

    A failure to read the file gives the same :class:`ParseFailure` for every selection;
    a selection that is empty gives its own.
    """
    selections = tuple(selections)
    for sel in selections:
        check_options(backend, sel, include_waters, include_hydrogens)
    mod = _backend(backend)
    path_s = str(path)
    try:
        source = sniff.load_source(path, max_bytes)
        try:
            source = trim(source)
        except Exception:  # noqa: BLE001, S110 - trimming only saves time; parse everything
            pass
        if source.fmt == "pdb":
            sniff.check_pdb_coordinates(source.data)
    except sniff.SourceError as exc:
        return {sel: ParseFailure(path_s, exc.reason) for sel in selections}
    filters = [prefilter(sel) for sel in selections]
    names = None if any(f[0] is None for f in filters) else frozenset().union(*(f[0] for f in filters))
    protein_only = all(f[1] for f in filters)
    try:
        table = mod.read_table(source, names, protein_only, include_waters)
    except Exception as exc:  # noqa: BLE001 - any parser error is a reason, not a crash
        failure = ParseFailure(path_s, _reason(f"{backend} could not parse the file", exc))
        return {sel: failure for sel in selections}
    meta = {
        "method": source.method,
        "resolution": source.resolution,
        "n_models": source.n_models or table.n_models,
        "path": path_s,
        "backend": backend,
        "format": source.fmt,
    }
    out: dict[str, PointCloud | ParseFailure] = {}
    for sel in selections:
        try:
            arrays = apply_policy(
                table, sel, include_waters=include_waters, include_hydrogens=include_hydrogens
            )
        except ValueError as exc:  # the policy's reasons ("no protein residues ...")
            out[sel] = ParseFailure(path_s, _reason("", exc))
            continue
        except Exception as exc:  # noqa: BLE001
            out[sel] = ParseFailure(path_s, _reason("policy error", exc))
            continue
        out[sel] = PointCloud(id=source.entry_id, meta={**meta, "selection": sel}, **arrays)
    return out


def read_structure(
    path: str | Path,
    *,
    backend: str = "gemmi",
    selection: str = "ca",
    include_waters: bool = False,
    include_hydrogens: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> PointCloud:
    """Selected atoms of model 1 of one structure file, by the module policy.

    Args:
        path: a PDB or mmCIF file, gzipped or not (recognised by content).
        backend: ``"gemmi"`` (default) or ``"biopython"``; both give the same atoms.
        selection: ``"ca"``, ``"backbone"`` (N, CA, C, O), ``"heavy"`` (protein heavy
            atoms) or ``"all"`` (every atom, ligands included).
        include_waters, include_hydrogens: keep waters / H and D atoms (``"all"`` only).
        max_bytes: largest accepted file, compressed and decompressed.

    Raises:
        StructureError: the file gives no point cloud; ``.reason`` says why.
        ValueError: a bad argument.
    """
    result = read_selections(
        path,
        (selection,),
        backend=backend,
        include_waters=include_waters,
        include_hydrogens=include_hydrogens,
        max_bytes=max_bytes,
    )[selection]
    if isinstance(result, ParseFailure):
        raise StructureError(path, result.reason)
    return result


def try_read_structure(path: str | Path, **kwargs: Any) -> PointCloud | ParseFailure:
    """:func:`read_structure` for batches: a bad file gives a :class:`ParseFailure`.

    Bad *arguments* still raise ``ValueError`` (they are the caller's bug, not the file's).
    """
    check_options(
        kwargs.get("backend", "gemmi"),
        kwargs.get("selection", "ca"),
        kwargs.get("include_waters", False),
        kwargs.get("include_hydrogens", False),
    )
    try:
        return read_structure(path, **kwargs)
    except StructureError as exc:
        return ParseFailure(str(path), exc.reason)
    except Exception as exc:  # noqa: BLE001 - never let one file break a batch
        return ParseFailure(str(path), _reason("unexpected error", exc))


def _reason(prefix: str, exc: BaseException) -> str:
    msg = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, (ValueError, RuntimeError)) or prefix:
        msg = f"{type(exc).__name__}: {msg}"
    text = f"{prefix}: {msg}" if prefix else msg
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."
