"""Run a parser over many files in worker processes, surviving workers that die.

:func:`parse_in_pool` keeps a few chunks per worker in flight and yields results in input
order. When a worker dies (the out-of-memory killer, a crash in a C extension), the
``ProcessPoolExecutor`` breaks and fails every chunk in flight: chunks that had finished
keep their results, the others are parsed again one file at a time in a separate
process, so that a file that kills its process is identified and reported as a failure
of that file alone; the chunks not yet started go to a new pool.

Workers ignore SIGINT: Ctrl-C in a terminal reaches the whole process group, and it is
the parent's to handle (it stops the build and cleans up); a worker that took it would
print a traceback and break the pool.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

Work = Callable[[list[str]], list[tuple[str, Any]]]  # picklable: a chunk -> [(item, result)]

DIED = "parser process died"  # the reason's category in failures.tsv


def parse_in_pool(work: Work, items: list[str], workers: int) -> Iterator[tuple[str, Any]]:
    """``work(chunk)`` over ``items`` in ``workers`` processes: one ``(item, result)`` per
    item, in input order.

    An item whose process dies while parsing it alone gives ``(item, "parser process
    died: <signal or exit code> on this file")``; an exception raised by ``work``
    propagates.
    """
    size = max(1, min(16, len(items) // (workers * 8)))
    chunks = deque(items[i : i + size] for i in range(0, len(items), size))
    while chunks:
        before = len(chunks)
        leftover = yield from _pool_pass(work, chunks, workers)
        if not leftover and len(chunks) == before:  # the pool broke before taking any work
            leftover = [(chunks.popleft(), None)]
        if leftover:
            with _Solo(work) as solo:
                for chunk, fut in leftover:
                    if fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None:
                        yield from fut.result()  # finished before the pool broke
                    else:
                        for item in chunk:
                            yield solo.run(item)


def _pool_pass(work: Work, chunks: deque[list[str]], workers: int):  # noqa: ANN202 - a generator
    """Feed ``chunks`` (taken from the left) to one pool and yield results in order.
    Returns the ``(chunk, future)`` pairs in flight when the pool broke, else []."""
    pending: deque[tuple[list[str], Future]] = deque()
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_ignore_interrupts)

    def submit() -> bool:
        chunk = chunks.popleft()
        try:
            pending.append((chunk, pool.submit(work, chunk)))
        except BrokenProcessPool:
            chunks.appendleft(chunk)
            return False
        return True

    try:
        while chunks and len(pending) < workers * 4 and submit():
            pass
        while pending:
            chunk, fut = pending[0]
            try:
                result = fut.result()
            except BrokenProcessPool:
                return list(pending)
            pending.popleft()
            if chunks:
                submit()
            yield from result
        return []
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _solo_loop(conn: Any, work: Work) -> None:
    """Child of :class:`_Solo`: parse the items it is sent, one at a time."""
    _ignore_interrupts()
    while True:
        try:
            item = conn.recv()
        except EOFError:
            return
        if item is None:
            return
        try:
            (result,) = work([item])
            conn.send(("ok", result))
        except Exception as exc:  # noqa: BLE001 - re-raised in the parent
            try:
                conn.send(("error", exc))
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                conn.send(("error", RuntimeError(repr(exc))))


class _Solo:
    """One worker process that parses one item at a time; started again after it dies."""

    def __init__(self, work: Work) -> None:
        self.work = work
        self.proc: Any = None
        self.conn: Any = None

    def run(self, item: str) -> tuple[str, Any]:
        if self.proc is None:
            ctx = multiprocessing.get_context()
            self.conn, child = ctx.Pipe()
            self.proc = ctx.Process(target=_solo_loop, args=(child, self.work), daemon=True)
            self.proc.start()
            child.close()
        try:
            self.conn.send(item)
            status, value = self.conn.recv()
        except (EOFError, OSError):  # the process died on this item, and on it alone
            self.proc.join()
            how = describe_exit(self.proc.exitcode)
            self.close()
            return item, f"{DIED}: {how} on this file"
        if status == "error":
            raise value
        return value

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.conn.send(None)
            except OSError:
                pass
            self.proc.join(timeout=10)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
            self.conn.close()
        self.proc = self.conn = None

    def __enter__(self) -> _Solo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe_exit(exitcode: int | None) -> str:
    """``killed by signal 9 (SIGKILL, ...)`` or ``exit code N``, from a process exitcode."""
    if exitcode is None:
        return "no exit status"
    if exitcode >= 0:
        return f"exit code {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = "unknown signal"
    if -exitcode == getattr(signal, "SIGKILL", 9):
        name += ", as the out-of-memory killer sends"
    return f"killed by signal {-exitcode} ({name})"
