"""Build a :mod:`data_pipeline.store` from structure files, in parallel and atomically.

:func:`build_store` parses every source file with the shared policy
(:mod:`data_pipeline.structure`) in a process pool, keeps one cloud per file (the
selected atoms of all protein chains of model 1) or, with ``per_chain=True``, one cloud
per chain, filters by size and streams everything into a temporary directory that is
renamed into place at the end. Splits are decided once all clouds are known, per
connected component of clouds sharing a group key, an exact residue sequence, an
entry ID or (``split_identity``) a homology cluster, a component too large for its
held-out split going to train (:mod:`data_pipeline.splits`), and written before the
store is committed.

The store remembers its configuration (selection, backend and its version, policy
version, split rule version, filters, per-chain flag, split fractions and the set of
source files as path + size + mtime) as a sha256. Building again with the same configuration does no
work once the store's checksums verify (a damaged one is rebuilt); a different
configuration is refused (:class:`StoreConfigMismatch`, naming the keys) unless
``overwrite=True``. A worker process that dies costs only the file it died on
(:mod:`data_pipeline.build_pool`). A build that gives no cloud at all writes no store
(:class:`EmptyBuild`) and leaves any existing one as it was.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import Bio
import gemmi
import numpy as np
from tqdm import tqdm

from data_pipeline.build_pool import parse_in_pool
from data_pipeline.build_report import BuildReport as BuildReport  # re-exported
from data_pipeline.build_report import EmptyBuild as EmptyBuild  # re-exported
from data_pipeline.build_report import report_existing
from data_pipeline.build_sources import MISSING, find_structure_files, sources_table
from data_pipeline.build_target import StoreConfigMismatch as StoreConfigMismatch  # re-exported
from data_pipeline.build_target import check_target, failures_beside
from data_pipeline.parse import backend_version, check_options, try_read_structure
from data_pipeline.sniff import file_stem
from data_pipeline.splits import (
    HOMOLOGY_RULE_VERSION,
    SPLIT_NAMES,
    SPLIT_RULE_VERSION,
    check_fractions,
    component_splits,
    component_summary,
    entry_link,
    group_key,
    chain_sequences,
    cloud_sequence,
    HOMOLOGY_MIN_RESIDUES,
    sequence_key,
)
from data_pipeline.homology import homology_keys
from data_pipeline.store_writer import CloudRecord, StoreWriter, remove_stale_temporaries
from data_pipeline.atomic_files import run_io, write_bytes_atomic
from data_pipeline.structure import POLICY_VERSION, ParseFailure, PointCloud



# ------------------------------------------------------------------------- worker


def _parse_chunk(paths: list[str], options: dict[str, Any]) -> list[tuple[str, Any]]:
    """Worker: parse files and cut them into compact cloud tuples (or failures)."""
    out: list[tuple[str, Any]] = []
    for path in paths:
        result = try_read_structure(path, selection=options["selection"], backend=options["backend"])
        if isinstance(result, ParseFailure):
            out.append((path, result.reason))
        else:
            out.append((path, _cut(result, options["per_chain"], options["chain_sequences"])))
    return out


def _cut(
    cloud: PointCloud, per_chain: bool, chain_sequences_wanted: bool
) -> list[tuple[str | None, np.ndarray, np.ndarray, dict]]:
    """The clouds of one file, each with its entry fields; ``chain_sequences_wanted`` adds
    the residue sequence of each of its chains (for homology links, not stored)."""
    codes = cloud.residue_codes()
    info = {k: cloud.meta.get(k) for k in ("method", "resolution", "n_models")}
    info["entry_id"] = cloud.id
    masks = {chain: cloud.chain_id == chain for chain in cloud.chains()}
    sequences = chain_sequences(cloud) if chain_sequences_wanted else {}
    pieces = [(None, None, list(masks))] if not per_chain else [(c, m, [c]) for c, m in masks.items()]
    out = []
    for chain, mask, chains in pieces:
        fields = {**info, "sequence_sha256": sequence_key(cloud_sequence(cloud, mask))}
        if chain_sequences_wanted:
            fields["chain_sequences"] = [sequences[c] for c in chains]
        out.append((chain, cloud.coords if mask is None else cloud.coords[mask],
                    codes if mask is None else codes[mask], fields))  # fmt: skip
    return out


def _homology_clusters(
    chain_sequences: list[list[str]], min_identity: float, progress: bool, workers: int
) -> list[list[str]]:
    """Per cloud, the homology cluster keys of its chains (split rule d), searched in
    ``workers`` processes."""
    distinct = sorted({seq for seqs in chain_sequences for seq in seqs})
    keys = dict(zip(distinct, homology_keys(
        distinct, min_identity, min_residues=HOMOLOGY_MIN_RESIDUES, progress=progress, workers=workers)))  # fmt: skip
    return [sorted({keys[s] for s in seqs if keys[s] is not None}) for seqs in chain_sequences]


def _results(
    paths: list[Path], options: dict[str, Any], workers: int
) -> Iterator[tuple[str, Any]]:
    """Parse results in input order; a worker that dies fails only its file (build_pool)."""
    strs = [str(p) for p in paths]
    if workers <= 1:
        for s in strs:
            yield from _parse_chunk([s], options)
        return
    yield from parse_in_pool(partial(_parse_chunk, options=options), strs, workers)


# -------------------------------------------------------------------------- build


def store_config(
    paths: Sequence[Path],
    *,
    selection: str,
    backend: str,
    min_points: int,
    max_points: int | None,
    per_chain: bool,
    split_fractions: Sequence[float],
    table: str | None = None,
    split_identity: float | None = None,
) -> dict[str, Any]:
    """The configuration that identifies a store (all of it enters the hash; a
    ``split_identity`` and its ``homology_rule`` only when set, so stores built without
    it keep their hash)."""
    table = sources_table(paths) if table is None else table
    homology = {} if split_identity is None else {"split_identity": split_identity,
                                                  "homology_rule": HOMOLOGY_RULE_VERSION}
    return {
        **homology,
        "selection": selection,
        "backend": backend,
        "backend_version": backend_version(backend),
        "policy_version": POLICY_VERSION,
        "split_rule": SPLIT_RULE_VERSION,
        "min_points": min_points,
        "max_points": max_points,
        "per_chain": per_chain,
        "split_fractions": list(split_fractions),
        "n_sources": len(paths),
        # surrogateescape: a file name that is not UTF-8 hashes as its bytes on disk
        "sources_sha256": hashlib.sha256(table.encode("utf-8", "surrogateescape")).hexdigest(),
    }


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def build_store(
    sources: Sequence[str | Path],
    out: str | Path,
    *,
    selection: str = "ca",
    min_points: int = 1,
    max_points: int | None = None,
    backend: str = "gemmi",
    workers: int | None = None,
    per_chain: bool = False,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    split_identity: float | None = None,
    overwrite: bool = False,
    progress: bool = True,
    missing_ok: bool = False,
) -> BuildReport:
    """Parse ``sources`` into a point-cloud store at ``out``.

    Args:
        sources: structure files and/or directories (searched recursively by suffix).
        out: the store directory to create.
        selection: ``ca``, ``backbone``, ``heavy`` or ``all`` (see :mod:`data_pipeline.structure`).
        min_points, max_points: clouds outside [min_points, max_points] are left out and
            listed in ``failures.tsv``; ``max_points=None`` means no upper limit.
        backend: ``gemmi`` or ``biopython``.
        workers: parser processes, and homology search processes with ``split_identity``
            (default: CPU count); 1 parses (and searches) in this process.
        per_chain: one cloud per protein chain instead of one per file.
        split_fractions: (train, val, test), summing to 1.
        split_identity: also keep clouds whose protein chains are at least this
            identical (a fraction in (0, 1], e.g. 0.3) in one split (rule d of
            :mod:`data_pipeline.splits`); None: exact duplicates only.
        overwrite: replace a store built with another configuration.
        progress: show a tqdm bar on stderr.
        missing_ok: list a source that does not exist in ``failures.tsv`` (as
            ``missing``) instead of raising FileNotFoundError.

    Returns:
        A :class:`BuildReport`; ``status == "up-to-date"`` when nothing had to be done
        (the store at ``out`` has this configuration and its checksums verify; a store
        with this configuration that is damaged is rebuilt).

    Raises:
        ValueError: a bad argument. StoreConfigMismatch: ``out`` holds another build.
        StoreError: ``out`` is not a store. EmptyBuild: no cloud at all; nothing was
        written but the failure list, ``<out>.failures.tsv``. OSError: ``out`` cannot be
        created (set-up). RunIOError (an OSError): an I/O error once the build started,
        e.g. a full disk; an existing store is left as it was.
    """
    t0 = time.perf_counter()
    check_options(backend, selection, False, False)
    fractions = check_fractions(split_fractions)
    if min_points < 1:
        raise ValueError(f"min_points must be >= 1, got {min_points}")
    if max_points is not None and max_points < min_points:
        raise ValueError(f"max_points must be >= min_points ({min_points}), got {max_points}")
    if split_identity is not None:
        if isinstance(split_identity, bool) or not isinstance(split_identity, numbers.Real) or not 0 < split_identity <= 1:
            raise ValueError(f"split_identity must be a fraction in (0, 1] or None, got {split_identity!r}")
        split_identity = float(split_identity)  # 1 and 1.0 are one configuration
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    missing: list[Path] = []
    paths = find_structure_files(sources, missing if missing_ok else None)
    table = sources_table(paths, missing)
    config = store_config(
        paths, selection=selection, backend=backend, min_points=min_points, max_points=max_points,
        per_chain=per_chain, split_fractions=fractions, table=table, split_identity=split_identity,
    )  # fmt: skip
    digest = config_hash(config)
    remove_stale_temporaries(out)  # first: it may put back a store that a killed build had set aside
    existing = check_target(out, config, digest, table, overwrite, progress)
    if existing is not None:
        with run_io(f"reading the store {out}"):
            return report_existing(existing, digest, time.perf_counter() - t0)

    options = {"selection": selection, "backend": backend, "per_chain": per_chain,
               "chain_sequences": split_identity is not None}  # fmt: skip
    failures: list[tuple[str, str]] = [(str(p), MISSING) for p in sorted(missing)]
    files_seen = len(paths) + len(missing)
    seen_ids: Counter[str] = Counter()
    groups: list[str] = []  # per written cloud: what its split is decided by (splits.py)
    sequences: list[str | None] = []
    entry_links: list[str | None] = []
    chain_sequences: list[list[str]] = []  # with split_identity only
    writer = StoreWriter(out, overwrite=True)  # set-up: an unusable ``out`` raises OSError here
    with run_io(f"writing the store {out}"), writer:  # after it: RunIOError (e.g. disk full)
        writer.split_fractions = fractions
        for path, reason in failures:
            writer.add_failure(path, reason)
        bar = tqdm(total=len(paths), desc="parse", unit="file", disable=not progress, file=sys.stderr)
        for path, result in _results(paths, options, workers):
            bar.update(1)
            if isinstance(result, str):
                failures.append((path, result))
                writer.add_failure(path, result)
                continue
            for chain, coords, codes, info in result:
                label = f" chain {chain}" if chain is not None else ""
                n = len(coords)
                if n < min_points or (max_points is not None and n > max_points):
                    limit = f"< min_points={min_points}" if n < min_points else f"> max_points={max_points}"
                    reason = f"filtered: {n} points {limit}{label}"
                    failures.append((path, reason))
                    writer.add_failure(path, reason)
                    continue
                base_id = info["entry_id"] if chain is None else f"{info['entry_id']}_{chain}"
                copies = seen_ids[base_id]  # same entry in several files: keep IDs unique
                cloud_id = base_id if copies == 0 else f"{base_id}#{copies + 1}"
                group = group_key(file_stem(path), info["entry_id"])
                chain_seqs = info.pop("chain_sequences", [])
                entry = {"source": path, "chain": chain, "group": group, **info}
                try:
                    writer.add(CloudRecord(cloud_id, coords, codes, entry))  # split: set below
                except ValueError as exc:  # a cloud no store may hold: recorded, the build goes on
                    failures.append((path, f"not stored{label}: {exc}"))
                    writer.add_failure(path, failures[-1][1])
                    continue
                seen_ids[base_id] += 1
                groups.append(group)
                sequences.append(info.get("sequence_sha256"))
                entry_links.append(entry_link(info["entry_id"]))
                chain_sequences.append(chain_seqs)
        bar.close()
        if not writer.ids:  # nothing to keep: never replace a store with an empty one
            raise _empty_build(out, files_seen, failures, digest, time.perf_counter() - t0)
        clusters = (None if split_identity is None
                    else _homology_clusters(chain_sequences, split_identity, progress, workers))  # fmt: skip
        splits, keys = component_splits(groups, sequences, entry_links, fractions, clusters)
        writer.set_splits(splits, [{"split_key": k} for k in keys])
        writer.write_text("sources.tsv", table)
        meta = writer.commit(
            {
                "config": config,
                "config_hash": digest,
                "split_fractions": list(fractions),
                "versions": _versions(),
                "build_seconds": round(time.perf_counter() - t0, 3),
                "files_seen": files_seen,
                "split_components": component_summary(keys, fractions),
            }
        )
        failures_beside(out).unlink(missing_ok=True)  # the list of an earlier empty build is stale
    counts = meta["counts"]
    return BuildReport(
        out, "built", files_seen, counts["clouds"], counts["points"], counts["splits"],
        failures, time.perf_counter() - t0, digest, meta["split_components"],
    )  # fmt: skip


def _empty_build(
    out: Path, files_seen: int, failures: list[tuple[str, str]], digest: str, seconds: float
) -> EmptyBuild:
    """The exception to raise; saves the failure list beside ``out`` (atomically) when it can."""
    report = BuildReport(out, "empty", files_seen, 0, 0, {k: 0 for k in SPLIT_NAMES}, failures, seconds, digest)
    path: Path | None = failures_beside(out)
    text = "file\treason\n" + "".join(f"{f}\t{' '.join(r.split())}\n" for f, r in failures)
    try:
        write_bytes_atomic(path, text.encode("utf-8", "backslashreplace"))  # non-UTF-8 names too
    except OSError:
        path = None  # the message still gives the counts by reason and an example
    return EmptyBuild(report, path)


def _versions() -> dict[str, str]:
    return {
        "data_pipeline": _package_version(),
        "gemmi": gemmi.__version__,
        "biopython": Bio.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("protein-care")  # data_pipeline ships in the protein-care distribution
    except PackageNotFoundError:
        return "0.0.0+unknown"
