"""The explorer's embedding cache: each (run, protein, axis, steps) is embedded once."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any


class LRUCache:
    """A thread-safe least-recently-used cache; :meth:`get_or_compute` runs ``compute``
    at most once per key at a time (computations are serialised: two CPU cores do not
    gain from two encoders running at once). Subclasses may bound it further by
    extending :meth:`_evict` (e.g. :class:`.uploads.SessionUploads`)."""

    def __init__(self, maxsize: int = 256) -> None:
        if maxsize < 1:
            raise ValueError(f"cache size must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._compute_lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key) -> bool:
        return key in self._items

    def _get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return True, self._items[key]
        return False, None

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        found, value = self._get(key)
        if found:
            return value
        with self._compute_lock:
            found, value = self._get(key)  # computed by another thread while we waited
            if found:
                return value
            value = compute()
            self.misses += 1  # only ever changed under the compute lock
            self._put(key, value)
        return value

    def _put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            self._evict(key)

    def _evict(self, key: Hashable) -> None:
        """Drop the least recently used items over ``maxsize``; runs under the lock
        right after ``key`` was stored."""
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)
