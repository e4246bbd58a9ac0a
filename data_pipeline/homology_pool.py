"""Worker processes for the homology search of :mod:`data_pipeline.homology` (``workers``).

Two stages of the search split into independent tasks, which :func:`ordered_map` runs in
a ``ProcessPoolExecutor``:

* the band test: one task per block of query sequences and their k-mer hits; the k-mer
  index (the sorted sequence and position of every k-mer) reaches each worker once,
  through the pool's initializer, and a task carries only its block's query k-mers;
* the alignments (:func:`align_candidates`, which also runs them in this process for
  ``workers=1``): batches of candidate pairs as index pairs; each worker holds the
  distinct sequences and makes its own aligner, once.

Tasks are drawn lazily from an iterator, at most :data:`IN_FLIGHT` per worker at once, and
results come back in task order, so memory stays bounded (blocks, never all at once) and
the output is the in-process one whatever the number of workers or their timing. For
:func:`~data_pipeline.homology.homology_keys` each batch of pairs is checked against the
clusters joined so far just before it is sent, as the in-process search checks each pair:
only pairs whose batch was in flight when their clusters merged are aligned for nothing.
Single-linkage clusters do not depend on which redundant pairs are aligned.

Memory: a worker works on one task at a time, a block of at most
:data:`~data_pipeline.homology._BLOCK_HITS` hits (about 100 MB; with N workers the blocks
are also cut to a quarter of the hits per worker or fewer, so that all get work) or a
batch of pairs: N workers need up to N blocks' memory (4,000 random chains,
:func:`homology_keys`: 337 MB peak in one process; with 2 workers 181 MB in the parent and
at most 321 MB resident in a worker, shared pages included).

Start method: the platform's default (fork on Linux up to Python 3.13: workers share the
parent's arrays copy-on-write; under spawn or forkserver each worker holds a copy of the
index, 8 bytes per k-mer, and of the sequences). Workers ignore SIGINT, as in
:mod:`data_pipeline.build_pool`: Ctrl-C is the parent's. A worker that dies (e.g. killed
for memory) fails the search with a RuntimeError.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
from tqdm import tqdm

#: ``multiprocessing`` start method of the pools; None: the platform's default.
START_METHOD: str | None = None
#: Tasks submitted ahead per worker (results are consumed in order).
IN_FLIGHT = 2
#: Candidate pairs per alignment task: a block's pairs spread over SPREAD tasks per worker,
#: within [MIN_BATCH, ALIGN_BATCH]: the fewer pairs in flight, the fewer aligned for nothing
#: in homology_keys; the more per task, the less overhead (about 0.15 ms a task here).
ALIGN_BATCH = 256
MIN_BATCH = 16
SPREAD = 128

_state: Any = None  # a worker's state: make_state(*state_args) of its pool


def ordered_map(
    fn: Callable[[Any, Any], Any], items: Iterable[Any], workers: int,
    make_state: Callable[..., Any], state_args: tuple = (),
) -> Iterator[tuple[Any, Any]]:
    """``(item, fn(state, item))`` for each of ``items``, in order, ``state`` being
    ``make_state(*state_args)`` made once per process: in this one (no pool) when
    ``workers == 1``, else in each of ``workers`` worker processes, started at the first
    item (none for no item). ``fn`` and ``make_state`` must be module-level functions (or
    classes) and ``items`` picklable; ``items`` is read at most ``IN_FLIGHT * workers``
    ahead of the results yielded."""
    if workers == 1:
        state = make_state(*state_args)
        for item in items:
            yield item, fn(state, item)
        return
    pending: deque[tuple[Any, Future]] = deque()
    pool = None
    try:
        for item in items:
            if pool is None:
                pool = ProcessPoolExecutor(workers, multiprocessing.get_context(START_METHOD),
                                           initializer=_start_worker, initargs=(make_state, state_args))  # fmt: skip
            try:
                pending.append((item, pool.submit(_run, fn, item)))
            except BrokenProcessPool as exc:  # a worker died while this process was busy
                raise _worker_died() from exc
            if len(pending) >= IN_FLIGHT * workers:
                yield _result(*pending.popleft())
        while pending:
            yield _result(*pending.popleft())
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class Clusters:
    """Single-linkage clusters of ``n`` items as a label array: ``roots[x]`` is the
    smallest item of the cluster of ``x``. A merge relabels the members of the larger
    root (O(n), at most n - 1 merges), so a batch of pairs is checked in one step."""

    def __init__(self, n: int) -> None:
        self.roots = np.arange(n)

    def joined(self, i: int, j: int) -> bool:
        return self.roots[i] == self.roots[j]

    def apart(self, pairs: np.ndarray) -> np.ndarray:
        """Per row ``(i, j)`` of ``pairs``, whether ``i`` and ``j`` are in two clusters."""
        return self.roots[pairs[:, 0]] != self.roots[pairs[:, 1]]

    def union(self, i: int, j: int) -> None:
        a, b = sorted((int(self.roots[i]), int(self.roots[j])))
        if a != b:
            self.roots[self.roots == b] = a


def align_candidates(
    band: np.ndarray, blocks: Iterable[np.ndarray], sequences: list[str], link: Callable[..., bool],
    make_aligner: Callable[[], Any], all_pairs: bool, workers: int, progress: bool,
) -> tuple[list[tuple[int, int]], list[int]]:
    """Align the candidate pairs, ``band`` then each of ``blocks`` (``[m, 2]`` indices into
    ``sequences``; the blocks are formed as they are needed). Returns the pairs that
    ``link(a, b, aligner=...)`` links, in candidate order, and per sequence the smallest
    member of its cluster. Without ``all_pairs`` a pair already in one cluster is not
    aligned: with ``workers == 1`` each pair is checked in turn, in this process; else
    each batch is checked as it is sent to the ``workers`` processes (:func:`ordered_map`),
    each with its own ``make_aligner()``."""
    clusters = Clusters(len(sequences))
    bar = tqdm(total=len(band), desc="aligning", unit="pair", disable=not progress)

    def counted() -> Iterator[np.ndarray]:  # one exhaustive block at a time
        yield band
        for block in blocks:  # the total grows as the exhaustive blocks are formed
            bar.total += len(block)
            bar.refresh()
            yield block

    def batches() -> Iterator[np.ndarray]:
        for block in counted():
            size = min(ALIGN_BATCH, max(MIN_BATCH, -(-len(block) // (SPREAD * workers))))
            for start in range(0, len(block), size):
                batch = whole = block[start : start + size]
                if not all_pairs:
                    batch = whole[clusters.apart(whole)]
                    bar.update(len(whole) - len(batch))  # skipped
                if len(batch):
                    yield batch

    links: list[tuple[int, int]] = []
    if workers == 1:
        aligner = make_aligner()
        for block in counted():
            for i, j in block.tolist():
                bar.update()
                if (all_pairs or not clusters.joined(i, j)) and link(sequences[i], sequences[j], aligner=aligner):
                    links.append((i, j))
                    clusters.union(i, j)
    else:
        for batch, linked in ordered_map(_judge, batches(), workers, _judging, (sequences, link, make_aligner)):
            bar.update(len(batch))
            for i, j in batch[linked].tolist():
                links.append((i, j))
                clusters.union(i, j)
    bar.close()
    return links, clusters.roots.tolist()


def _judging(sequences: list[str], link: Callable[..., bool], make_aligner: Callable[[], Any]) -> tuple:
    """An alignment worker's state: the sequences, the link test and its own aligner."""
    return sequences, link, make_aligner()


def _judge(state: tuple, pairs: np.ndarray) -> np.ndarray:
    """Per row of ``pairs`` (indices into the state's sequences), whether it links."""
    sequences, link, aligner = state
    return np.array([link(sequences[i], sequences[j], aligner=aligner) for i, j in pairs.tolist()], bool)


def _start_worker(make_state: Callable[..., Any], state_args: tuple) -> None:
    global _state
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _state = make_state(*state_args)


def _run(fn: Callable[[Any, Any], Any], item: Any) -> Any:
    return fn(_state, item)


def _result(item: Any, future: Future) -> tuple[Any, Any]:
    try:
        return item, future.result()
    except BrokenProcessPool as exc:
        raise _worker_died() from exc


def _worker_died() -> RuntimeError:
    return RuntimeError(
        "a homology search worker process died (killed for memory?); fewer workers need "
        "less memory, workers=1 runs the search in this process"
    )
