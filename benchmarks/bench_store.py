"""Point-cloud store at scale: write time, random batch reads, memory of a full pass.

Generates ``--n`` synthetic clouds (default 200,000) with realistic sizes: log-normal
point counts with median ``--median`` (250, a CA cloud of a 250-residue chain), sigma 0.6,
clipped to [20, 5000], features in the 21-code residue vocabulary. They are streamed
through :func:`data_pipeline.store_writer.write_store` into a temporary folder that is deleted
afterwards. Each phase runs in a fresh process, so its peak RSS is its own:

* **write**: clouds generated on the fly (a cheap slice of a pre-drawn pool, timed alone
  and subtracted) and written; peak RSS of the writer.
* **random batches**: open the store, read ``--batches`` random batches of 64 clouds
  with ``read_batch`` (copies out of the memory map); clouds/s, points/s and the file
  pages the reads made resident (``RssFile``) compared with the bytes they asked for.
* **full pass**: ``store[i]`` and ``store.features(i)`` for every cloud, summing them so
  every page is touched; peak RSS (``VmHWM``), split into file-backed and anonymous.

Run: ``.venv/bin/python benchmarks/bench_store.py`` (about a minute and ~0.9 GB of disk
for 200,000 clouds; ``--n 20000`` for a quick run). Goals (issue 5): RSS < 2 GB while
iterating; batch reads touch only their slices. Figures: ``benchmarks/results/bench_store.md``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from data_pipeline.store import PointCloudStore  # noqa: E402
from data_pipeline.store_writer import CloudRecord, write_store  # noqa: E402

MB = 1024 * 1024


def status_kb(*fields: str) -> dict[str, int]:
    """Fields of /proc/self/status in kB (VmRSS, VmHWM, RssFile, RssAnon)."""
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in fields:
                out[key] = int(value.split()[0])
    return out


def sizes(n: int, median: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(rng.lognormal(np.log(median), 0.6, n)), 20, 5000).astype(np.int64)


def synthetic(n: int, median: float):
    """CloudRecords from a pre-drawn pool of points (generation costs ~nothing)."""
    ns = sizes(n, median)
    rng = np.random.default_rng(1)
    pool = (rng.normal(size=(8192, 3)) * 15).astype(np.float32)
    feats = rng.integers(0, 21, 8192).astype(np.uint8)
    starts = rng.integers(0, 8192 - 5000, n)
    for i in range(n):
        s, k = int(starts[i]), int(ns[i])
        yield CloudRecord(f"SYN{i:07d}", pool[s : s + k], feats[s : s + k], {"group": f"G{i // 4}"})


def phase_write(store: Path, n: int, median: float) -> dict:
    t0 = time.perf_counter()
    for _ in synthetic(n, median):
        pass
    gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    meta = write_store(synthetic(n, median), store, {"note": "bench_store synthetic"})
    total = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in store.iterdir())
    return {"gen_s": gen, "write_s": total - gen, "total_s": total, "clouds": meta["counts"]["clouds"],
            "points": meta["counts"]["points"], "bytes": size, **status_kb("VmHWM")}  # fmt: skip


def resident_bytes(path: Path) -> int:
    """Bytes of ``path`` in the page cache (mincore(2) over a fresh read-only mapping)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    size = path.stat().st_size
    page = os.sysconf("SC_PAGE_SIZE")
    with open(path, "rb") as fh:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fh.fileno(), 0)
        vec = (ctypes.c_ubyte * ((size + page - 1) // page))()
        if libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) != 0:
            raise OSError(ctypes.get_errno(), "mincore failed")
        libc.munmap(ctypes.c_void_p(addr), ctypes.c_size_t(size))
    return int(np.count_nonzero(np.frombuffer(vec, dtype=np.uint8) & 1)) * page


def evict(path: Path) -> None:
    """Drop ``path`` from the page cache (our own file; no root, no effect on others)."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def phase_batches(store: Path, batches: int, batch_size: int) -> dict:
    files = [store / "coords.npy", store / "features.npy"]
    # Locality, cold cache: evict the store, read 16 random batches with random-access
    # advice, then count the store's pages that the reads brought into the page cache.
    for f in files:
        evict(f)
    cold_before = sum(resident_bytes(f) for f in files)
    s = PointCloudStore(store, random_access=True)
    rng = np.random.default_rng(2)
    probe = [rng.integers(0, len(s), batch_size) for _ in range(16)]
    t0 = time.perf_counter()
    for ids in probe:
        s.read_batch(ids)
    cold_s = time.perf_counter() - t0
    cold_after = sum(resident_bytes(f) for f in files)
    asked = int(sum((s.offsets[i + 1] - s.offsets[i]).sum() for i in probe)) * 13  # 12 B xyz + 1 B code
    # Rate: many random batches, warm page cache (warmed in 16 MiB chunks).
    buf = bytearray(16 * MB)
    for f in files:
        with open(f, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass
    del buf
    idx = [rng.integers(0, len(s), batch_size) for _ in range(batches)]
    t0 = time.perf_counter()
    points = 0
    for ids in idx:
        coords, feats, _ = s.read_batch(ids)
        points += len(coords)
    dt = time.perf_counter() - t0
    return {"seconds": dt, "batches": batches, "clouds": batches * batch_size, "points": points,
            "probe_clouds": 16 * batch_size, "probe_asked_bytes": asked, "probe_seconds": cold_s,
            "probe_read_bytes": cold_after - cold_before, "cold_before": cold_before,
            "store_data_bytes": sum(f.stat().st_size for f in files),
            **status_kb("VmHWM", "RssFile", "RssAnon")}  # fmt: skip


def phase_iterate(store: Path) -> dict:
    s = PointCloudStore(store)
    t0 = time.perf_counter()
    total = 0.0
    codes = 0
    for i in range(len(s)):
        total += float(s[i].sum())
        codes += int(s.features(i).sum())
    dt = time.perf_counter() - t0
    return {"seconds": dt, "clouds": len(s), "checksum": total + codes, **status_kb("VmHWM", "RssFile", "RssAnon", "VmRSS")}


def run_phase(name: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--phase", name, *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000, help="number of clouds (default 200,000)")
    ap.add_argument("--median", type=float, default=250.0, help="median points per cloud (default 250)")
    ap.add_argument("--batches", type=int, default=2000, help="random batches to read (default 2000)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--tmpdir", default=None, help="where the temporary store goes (default: system temp)")
    ap.add_argument("--phase", choices=["write", "batches", "iterate"], help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.phase:  # child process: one phase, one JSON line
        store = Path(args.store)
        result = {
            "write": lambda: phase_write(store, args.n, args.median),
            "batches": lambda: phase_batches(store, args.batches, args.batch_size),
            "iterate": lambda: phase_iterate(store),
        }[args.phase]()
        print(json.dumps(result))
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="bench_store-", dir=args.tmpdir))
    try:
        store = tmp / "store"
        common = ["--store", str(store), "--n", str(args.n), "--median", str(args.median)]
        w = run_phase("write", *common)
        b = run_phase("batches", *common, "--batches", str(args.batches), "--batch-size", str(args.batch_size))
        it = run_phase("iterate", *common)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"store: {w['clouds']:,} synthetic clouds, {w['points']:,} points "
          f"(log-normal sizes, median {args.median:g}), {w['bytes'] / MB:,.0f} MiB on disk; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print()
    rows = [
        ("write (write_store, streamed)", f"{w['write_s']:.1f} s",
         f"{w['clouds'] / w['write_s']:,.0f} clouds/s, {w['bytes'] / MB / w['write_s']:,.0f} MiB/s",
         f"{w['VmHWM'] / 1024:,.0f} MiB"),
        (f"random batches ({args.batch_size} clouds, read_batch)", f"{b['seconds']:.2f} s",
         f"{b['batches'] / b['seconds']:,.0f} batches/s = {b['clouds'] / b['seconds']:,.0f} clouds/s, "
         f"{b['points'] / b['seconds'] / 1e6:,.1f} M points/s",
         f"{b['VmHWM'] / 1024:,.0f} MiB (file-backed {b['RssFile'] / 1024:,.0f}, anon {b['RssAnon'] / 1024:,.0f})"),
        ("full pass (store[i] + features(i))", f"{it['seconds']:.1f} s",
         f"{it['clouds'] / it['seconds']:,.0f} clouds/s",
         f"{it['VmHWM'] / 1024:,.0f} MiB (file-backed {it['RssFile'] / 1024:,.0f}, anon {it['RssAnon'] / 1024:,.0f})"),
    ]  # fmt: skip
    widths = [max(len(r[k]) for r in rows + [("phase", "time", "rate", "peak RSS")]) for k in range(4)]
    for r in [("phase", "time", "rate", "peak RSS"), *rows]:
        print("  ".join(c.ljust(wd) for c, wd in zip(r, widths)))
    print()
    read = b["probe_read_bytes"]
    print(f"locality (cold cache, random-access advice): {b['probe_clouds']:,} random clouds in 16 batches "
          f"asked for {b['probe_asked_bytes'] / MB:,.2f} MiB and brought {read / MB:,.2f} MiB of the store into "
          f"the page cache ({read / b['store_data_bytes']:.2%} of {b['store_data_bytes'] / MB:,.0f} MiB; "
          f"{b['probe_seconds'] * 1000:.0f} ms)")  # fmt: skip
    peak = it["VmHWM"] / 1024
    print(f"peak RSS of a full pass: {peak:,.0f} MiB (goal < 2048: {'met' if peak < 2048 else 'NOT met'}); "
          "file-backed pages are the mapped page cache, which the kernel reclaims under pressure")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
