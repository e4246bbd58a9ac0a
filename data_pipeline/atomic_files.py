"""Atomic file writes, shared by the pipeline, the trainers and the benchmarks, and
:class:`RunIOError`, an I/O error once the work has started (:func:`run_io`).

:func:`atomic_file` opens a fresh temporary file beside the target, and on a clean exit
flushes and fsyncs it, renames it over the target and fsyncs the folder. A killed writer
therefore leaves the old file or the new one, never half of one; an exception leaves the
old file and removes the temporary one. The temporary file is created with ``open(...,
"x")``, not ``mkstemp``, so the result gets the usual mode (0o666 & ~umask), not 0600.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


class RunIOError(OSError):
    """An I/O error during a run (a full disk while writing results), as opposed to an
    output path found unusable at set-up: ``doing`` says what was being done, ``cause`` is
    the original error, ``partial`` what the run did before it (or None)."""

    def __init__(self, doing: str, cause: OSError, partial: object = None) -> None:
        super().__init__(*cause.args)
        self.doing, self.cause, self.partial = doing, cause, partial

    def __str__(self) -> str:
        return f"I/O error while {self.doing}: {self.cause}"


@contextmanager
def run_io(doing: str) -> Iterator[None]:
    """``with run_io("writing X"):`` an OSError in the block becomes a :class:`RunIOError`."""
    try:
        yield
    except RunIOError:
        raise
    except OSError as exc:
        raise RunIOError(doing, exc) from exc


def temporary_beside(path: Path, suffix: str = ".tmp") -> Path:
    """A fresh hidden name next to ``path`` (same file system, so the rename is atomic),
    ending in ``suffix`` (what a cleaner of killed writers' litter globs for); the folder
    is created if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{suffix}"


def process_alive(pid_text: str) -> bool:
    """Whether the process whose ID a temporary name holds still runs on this machine (an
    unreadable ID counts as gone; one we may not signal, as alive)."""
    try:
        os.kill(int(pid_text), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def temporary_writer_alive(path: Path) -> bool:
    """Whether the process that named the temporary file ``path`` (:func:`temporary_beside`:
    ``.<name>.<pid>.<hex><suffix>``) still runs, so that the file is not litter yet."""
    parts = Path(path).name.split(".")
    return len(parts) >= 4 and process_alive(parts[-3])


def fsync_dir(folder: Path) -> None:
    """Make renames inside ``folder`` durable (not possible on every platform)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path, *, text: bool = False, suffix: str = ".tmp") -> Iterator[IO]:
    """``with atomic_file(path) as handle:`` write to ``handle``; ``path`` is replaced only
    when the block ends without an exception (see the module docstring). ``suffix``: of
    the temporary file's name."""
    path = Path(path)
    tmp = temporary_beside(path, suffix)
    try:
        with open(tmp, "x" if text else "xb", encoding="utf-8" if text else None) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path, data: bytes, *, suffix: str = ".tmp") -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_file(path, suffix=suffix) as handle:
        handle.write(data)
    return Path(path)


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_file(path, text=True) as handle:
        handle.write(text)
    return Path(path)


def append_json_line(path, record: dict) -> None:
    """Append ``record`` to a JSON-lines file as one line with a single write (O_APPEND),
    so a killed process leaves whole lines or one torn last line, never a mixed one."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


def json_lines(text: str, key: str) -> list[dict]:
    """The records of a JSON-lines text that hold an integer ``key``; a line torn by a
    killed writer (not a JSON object with that key) is skipped."""
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get(key), int) and not isinstance(record[key], bool):
            records.append(record)
    return records


def write_torch_atomic(path, obj) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (checkpoints, tensor caches); returns the
    path. torch is imported here, not by the module: the pipeline itself does not need it."""
    import torch

    with atomic_file(path) as handle:
        torch.save(obj, handle)
    return Path(path)
