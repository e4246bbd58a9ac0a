"""What :func:`data_pipeline.fetch.fetch` returns: one :class:`FetchResult` per entry,
gathered in a :class:`FetchReport` (counts, failures, a summary table)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from data_pipeline.fetch_manifest import USABLE_STATUSES

__all__ = ["STATUSES", "FetchResult", "FetchReport"]

STATUSES: tuple[str, ...] = ("ok", "cached", "missing", "obsolete", "invalid", "failed")


@dataclass
class FetchResult:
    """The outcome for one entry (one manifest line).

    Attributes:
        id: the normalised PDB ID.
        status: one of :data:`STATUSES`.
        reason: why, for anything but a plain ``ok``/``cached``.
        path: the verified file (``ok``/``cached`` only).
        bytes: its size in bytes.
        sha256: its SHA-256 (hex).
        source: URL, mirror path or ``"cache"``.
        elapsed_s: wall time spent on this entry.
    """

    id: str
    status: str
    reason: str = ""
    path: Path | None = None
    bytes: int | None = None
    sha256: str | None = None
    source: str | None = None
    elapsed_s: float = 0.0

    def to_record(self, root: Path, fmt: str) -> dict:
        """The manifest line: ``path`` relative to ``root`` (the manifest's folder)."""
        return {
            "id": self.id,
            "status": self.status,
            "reason": self.reason,
            "path": os.path.relpath(self.path, root) if self.path else None,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "source": self.source,
            "elapsed_s": round(self.elapsed_s, 4),
            "format": fmt,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }


@dataclass
class FetchReport:
    """What :func:`fetch` did.

    Attributes:
        results: one per valid requested ID, in request order.
        rejected: ``(input, reason)`` for inputs that are not PDB IDs.
        elapsed_s: wall time of the whole call.
        manifest_path: the manifest the results were appended to.
    """

    results: list[FetchResult]
    rejected: list[tuple[str, str]] = field(default_factory=list)
    elapsed_s: float = 0.0
    manifest_path: Path | None = None

    @property
    def counts(self) -> dict[str, int]:
        """Entries per status, every status listed (zeros included)."""
        c = Counter(r.status for r in self.results)
        return {s: c.get(s, 0) for s in STATUSES}

    @property
    def ok(self) -> bool:
        """True when every requested input ended ``ok`` or ``cached``."""
        return not self.rejected and all(r.status in USABLE_STATUSES for r in self.results)

    @property
    def failures(self) -> list[FetchResult]:
        """Results that did not end ``ok`` or ``cached``."""
        return [r for r in self.results if r.status not in USABLE_STATUSES]

    @property
    def paths(self) -> dict[str, Path]:
        """``{id: verified file}`` for the ``ok`` and ``cached`` entries."""
        return {r.id: r.path for r in self.results if r.path and r.status in USABLE_STATUSES}

    def summary(self) -> str:
        """A plain-text table: entries and bytes per status, then throughput."""
        lines = [f"{'status':<9} {'entries':>8} {'MB':>10}"]
        for status, n in self.counts.items():
            size = sum(r.bytes or 0 for r in self.results if r.status == status)
            lines.append(f"{status:<9} {n:>8} {size / 1e6:>10.2f}")
        if self.rejected:
            lines.append(f"{'rejected':<9} {len(self.rejected):>8} {'':>10}")
        new_bytes = sum(r.bytes or 0 for r in self.results if r.status == "ok")
        secs = max(self.elapsed_s, 1e-9)
        lines.append(
            f"{len(self.results)} entries in {self.elapsed_s:.2f} s: "
            f"{len(self.results) / secs:.1f} entries/s, "
            f"{new_bytes / 1e6 / secs:.2f} MB/s downloaded"
        )
        return "\n".join(lines)
