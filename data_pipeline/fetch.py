"""Download PDB entries into a verified local cache: :func:`fetch`.

Every file lands in ``out_dir`` under the RCSB file name (``1ABC.cif.gz``) only after
it verified (complete gzip stream with a good CRC, non-empty, parses with gemmi, >= 1
atom, not cut short, and the requested entry; see :mod:`data_pipeline.fetch_verify`),
and it is written atomically (temporary name in the same folder, fsync, ``os.replace``).
Entries already cached and valid are skipped, so a killed run resumes where it stopped.
One line per entry is appended to ``out_dir/manifest.jsonl``
(:mod:`data_pipeline.fetch_manifest`).

Statuses:

=========  ==============================================================================
ok         downloaded (or copied from the mirror) and verified
cached     already in ``out_dir`` and verified again
missing    no such file (HTTP 404, or not in the mirror); permanent, not retried
obsolete   HTTP 404 and the RCSB holdings service says the entry was removed
invalid    the bodies served never verified (HTML with 200, bad CRC, truncated gzip), or
           the file is another entry
failed     transient faults outlasted the retries, or the file could not be written
=========  ==============================================================================
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import requests
from tqdm import tqdm

try:
    import fcntl
except ImportError:  # Windows: no cache lock; stale temporary files age out instead
    fcntl = None  # type: ignore[assignment]

from data_pipeline.fetch_http import (
    RCSB_FILES_URL,
    RCSB_HOLDINGS_URL,
    DownloadError,
    RetryPolicy,
    describe_error,
    download_verified,
    lookup_removed,
    make_session,
)
from data_pipeline.fetch_manifest import MANIFEST_NAME, USABLE_STATUSES, ManifestWriter
from data_pipeline.fetch_report import STATUSES, FetchReport, FetchResult
from data_pipeline.fetch_verify import VerificationError, verify_structure_bytes
from data_pipeline.rcsb_ids import FORMATS, mirror_candidates, remote_file_name, split_valid_ids
from data_pipeline.atomic_files import RunIOError, temporary_writer_alive, write_bytes_atomic

__all__ = ["STATUSES", "FetchResult", "FetchReport", "fetch", "RCSB_FILES_URL", "RCSB_HOLDINGS_URL"]

NO_PDB_FORMAT = "no PDB-format file; large entries exist only as mmCIF, use --format cif"
LOCK_NAME = ".fetch.lock"  # held (flock) by the fetch writing into a cache folder
_STALE_PART_S = 6 * 3600  # temporary files older than this are litter from killed runs
THREAD_PREFIX = "fetch-download"  # names the download threads (the CLI's second Ctrl-C looks for them)


@dataclass(frozen=True)
class _Job:
    """Settings shared by the workers of one :func:`fetch` call."""

    out_dir: Path
    fmt: str
    base_url: str
    holdings_url: str
    mirror: Path | None
    timeout: float
    policy: RetryPolicy
    session: requests.Session | None


def _lock_cache(out_dir: Path) -> int | None:
    """Take :data:`LOCK_NAME` in ``out_dir`` unless another process holds it.

    Returns the open descriptor (closing it releases the lock), or ``None``.

    Holding it means no other fetch that took it writes here, so the temporary files of
    processes that are gone are litter from killed runs (a fetch that started while the
    lock was held writes without it: its files are kept while it runs). Not holding it is
    fine too: writes are atomic either way.
    """
    if fcntl is None:
        return None
    fd = os.open(out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _say_in_flight(running: int) -> None:
    """On Ctrl-C: why the run does not stop at once (the manifest records what is in flight)."""
    if running:
        print(f"fetch: interrupted; letting the {running} download(s) in flight finish, so that the manifest "
              "records them (Ctrl-C again to stop at once)", file=sys.stderr, flush=True)


def _remove_stale_parts(out_dir: Path, *, all_of_them: bool) -> None:
    """Delete temporary files left by killed runs: those of writers that are gone (all of
    them while holding the lock, else only old ones). A fetch that started while another
    held the lock writes without it, so holding the lock does not make every part litter."""
    cutoff = time.time() - _STALE_PART_S
    for part in out_dir.glob(".*.part"):
        try:
            if not temporary_writer_alive(part) and (all_of_them or part.stat().st_mtime < cutoff):
                part.unlink()
        except OSError:
            pass


def _store(job: _Job, pdb_id: str, dest: Path, data: bytes, source: str) -> FetchResult:
    write_bytes_atomic(dest, data, suffix=".part")  # .part: what the cache's cleaner looks for
    digest = hashlib.sha256(data).hexdigest()
    return FetchResult(pdb_id, "ok", "", dest, len(data), digest, source)


def _from_mirror(job: _Job, pdb_id: str, dest: Path) -> FetchResult:
    assert job.mirror is not None
    candidates = mirror_candidates(job.mirror, pdb_id, job.fmt)
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        return FetchResult(pdb_id, "missing", f"not in mirror (looked for {candidates[0]})")
    data = found.read_bytes()
    try:
        verify_structure_bytes(data, job.fmt, pdb_id)
    except VerificationError as exc:  # a local file will not change on retry
        return FetchResult(pdb_id, "invalid", f"mirror file {found}: {exc}", source=str(found))
    return _store(job, pdb_id, dest, data, str(found))


def _from_http(job: _Job, pdb_id: str, dest: Path) -> FetchResult:
    assert job.session is not None
    url = f"{job.base_url.rstrip('/')}/{dest.name}"
    try:
        data = download_verified(
            job.session, url, fmt=job.fmt, timeout=job.timeout, policy=job.policy, pdb_id=pdb_id
        )
    except DownloadError as exc:
        if exc.status != "missing":
            return FetchResult(pdb_id, exc.status, exc.reason, source=url)
        return _classify_missing(job, pdb_id, exc.reason, url)
    return _store(job, pdb_id, dest, data, url)


def _classify_missing(job: _Job, pdb_id: str, http_reason: str, url: str) -> FetchResult:
    """A 404: obsolete if the holdings service says the entry was removed, else missing."""
    assert job.session is not None
    try:
        removed = lookup_removed(job.session, job.holdings_url, pdb_id, timeout=job.timeout)
    except (requests.RequestException, ValueError) as exc:
        note = f"; holdings lookup failed: {describe_error(exc)}"
        return FetchResult(pdb_id, "missing", f"{http_reason}{note}", source=url)
    if removed is not None:
        if removed["replaced_by"]:
            reason = f"superseded by {', '.join(removed['replaced_by'])}"
        else:
            date = removed.get("remove_date")  # an ISO string; anything else is shown as is
            when = f" on {str(date)[:10]}" if date not in (None, "") else ""
            reason = f"removed from the PDB{when}, no successor"
        return FetchResult(pdb_id, "obsolete", reason, source=url)
    detail = NO_PDB_FORMAT if job.fmt == "pdb" else "no such entry"
    return FetchResult(pdb_id, "missing", f"{http_reason}: {detail}", source=url)


def _fetch_one(job: _Job, pdb_id: str) -> FetchResult:
    """Cache check, then mirror or HTTP; never raises for a per-entry problem."""
    start = time.perf_counter()
    dest = job.out_dir / remote_file_name(pdb_id, job.fmt)
    prefix = ""
    try:
        if dest.exists():
            data = dest.read_bytes()
            try:
                verify_structure_bytes(data, job.fmt, pdb_id)
                digest = hashlib.sha256(data).hexdigest()
                result = FetchResult(pdb_id, "cached", "", dest, len(data), digest, "cache")
            except VerificationError as exc:  # corrupt cache: drop it, fetch again
                prefix = f"cached file was corrupt ({exc}), re-fetched; "
                dest.unlink(missing_ok=True)
                result = None
        else:
            result = None
        if result is None:
            fetcher = _from_mirror if job.mirror is not None else _from_http
            result = fetcher(job, pdb_id, dest)
            result.reason = prefix + result.reason if result.reason else prefix.rstrip("; ")
    except OSError as exc:  # disk full, permissions: this entry fails, the batch goes on
        result = FetchResult(pdb_id, "failed", f"local I/O error: {exc}")
    except Exception as exc:  # a bug must not sink the other entries either
        result = FetchResult(pdb_id, "failed", f"unexpected {type(exc).__name__}: {exc}")
    result.elapsed_s = time.perf_counter() - start
    return result


def _check_args(fmt: str, workers: int, timeout: float, retries: int) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")


def fetch(
    pdb_ids: str | Iterable[str],
    out_dir: str | Path,
    *,
    format: str = "cif",
    base_url: str = RCSB_FILES_URL,
    mirror: str | Path | None = None,
    workers: int = 8,
    timeout: float = 30.0,
    retries: int = 4,
    progress: bool | None = None,
    holdings_url: str = RCSB_HOLDINGS_URL,
    backoff_factor: float = 0.5,
    backoff_jitter: float = 0.25,
) -> FetchReport:
    """Download PDB entries into ``out_dir``, verified and atomically written.

    Args:
        pdb_ids: one ID or many: ``1abc``/``1ABC`` or ``pdb_00001abc``. Inputs that are
            not PDB IDs are listed in ``FetchReport.rejected``; duplicates are dropped.
        out_dir: the cache folder (created if missing). Files are named like RCSB's
            (``1ABC.cif.gz``, ``1ABC.pdb.gz``); ``manifest.jsonl`` is appended to.
        format: ``"cif"`` (PDBx/mmCIF, default) or ``"pdb"`` (legacy format, which many
            large entries do not have); always gzipped.
        base_url: the file service; files are ``{base_url}/{ID}.{format}.gz``.
        mirror: a local wwPDB mirror in the divided layout (``mmCIF/ab/1abc.cif.gz``,
            ``pdb/ab/pdb1abc.ent.gz``). When given, files are copied from it and the
            network is never used.
        workers: concurrent downloads (threads sharing one connection pool).
        timeout: seconds allowed to connect and for each read from the socket.
        retries: retries for transient faults (connection errors, timeouts, 429/5xx,
            interrupted or unverifiable bodies), with exponential backoff and jitter;
            ``Retry-After`` is honoured. A 404 is never retried.
        progress: show a tqdm bar on stderr: ``None`` (default) when stderr is a
            terminal, ``True`` always, ``False`` never.
        holdings_url: the RCSB holdings service asked about entries that 404, to tell
            ``obsolete`` (removed, maybe superseded) from ``missing``.
        backoff_factor: seconds; the n-th retry waits about ``backoff_factor * 2**(n-1)``.
        backoff_jitter: seconds of uniform random delay added to each backoff.

    Returns:
        A :class:`FetchReport`: one :class:`FetchResult` per valid ID (status, reason,
        path, size, SHA-256, source), rejected inputs, timings; ``report.ok`` is true
        when everything ended ``ok`` or ``cached``.

    Raises:
        ValueError: an argument is out of range (the message names it).
        OSError: ``out_dir`` or its manifest cannot be created (set-up).
        RunIOError: (an OSError) the manifest could not be written during the run (e.g. a
            full disk); the run stopped, no new entry was started, and ``partial`` is the
            :class:`FetchReport` of the entries done (their files are kept).

    Example:
        >>> report = fetch(["1l2y", "4hhb"], "pdb-cache", workers=4)  # doctest: +SKIP
        >>> report.counts["ok"] + report.counts["cached"]  # doctest: +SKIP
        2
        >>> report.paths["1L2Y"]  # doctest: +SKIP
        PosixPath('pdb-cache/1L2Y.cif.gz')
    """
    _check_args(format, workers, timeout, retries)
    if mirror is not None and not Path(mirror).is_dir():
        raise ValueError(f"mirror is not a directory: {mirror}")
    start = time.perf_counter()
    ids, rejected = split_valid_ids([pdb_ids] if isinstance(pdb_ids, str) else pdb_ids)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / MANIFEST_NAME
    policy = RetryPolicy(retries=retries, backoff_factor=backoff_factor, backoff_jitter=backoff_jitter)
    show = sys.stderr.isatty() if progress is None else progress
    by_id: dict[str, FetchResult] = {}
    io_error: OSError | None = None

    lock_fd = _lock_cache(root)
    # One Session for all workers: its urllib3 pool is thread-safe, and nothing else in it
    # (cookies, auth) is used.
    session = make_session(policy, pool_size=workers) if mirror is None else None
    try:
        _remove_stale_parts(root, all_of_them=lock_fd is not None)
        job = _Job(root, format, base_url, holdings_url, Path(mirror) if mirror else None,
                   timeout, policy, session)
        with ManifestWriter(manifest_path) as manifest:  # opening it is the last of the set-up
            def work(pdb_id: str) -> tuple[FetchResult, OSError | None]:
                result = _fetch_one(job, pdb_id)
                try:
                    manifest.append(result.to_record(root, format))  # as soon as it is decided
                except OSError as exc:  # e.g. a full disk: the run stops (below)
                    return result, exc
                return result, None

            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=THREAD_PREFIX)
            bar = tqdm(total=len(ids), unit="entry", file=sys.stderr, disable=not show)
            not_ok = 0
            futures = [pool.submit(work, pdb_id) for pdb_id in ids]
            try:
                for future in as_completed(futures):
                    if future.cancelled():  # never started: the run stopped on an I/O error
                        continue
                    result, error = future.result()
                    by_id[result.id] = result
                    not_ok += result.status not in USABLE_STATUSES
                    bar.update(1)
                    bar.set_postfix(not_ok=not_ok, refresh=False)
                    if error is not None:
                        io_error = io_error or error
                        pool.shutdown(wait=False, cancel_futures=True)  # start no more entries
            except KeyboardInterrupt:
                _say_in_flight(sum(f.running() for f in futures))
                raise
            finally:
                bar.close()
                pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: let running ones end
    finally:
        if session is not None:
            session.close()
        if lock_fd is not None:
            os.close(lock_fd)  # releases the lock

    report = FetchReport(
        results=[by_id[i] for i in ids if i in by_id],  # all of them unless a RunIOError stopped the run
        rejected=rejected,
        elapsed_s=time.perf_counter() - start,
        manifest_path=manifest_path,
    )
    if io_error is not None:
        raise RunIOError(f"recording results in {manifest_path}", io_error, report) from io_error
    return report
