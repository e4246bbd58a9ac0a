"""What a build reports: :class:`BuildReport` (also read back from a store that was
already up to date) and :class:`EmptyBuild` (no cloud at all: nothing written)."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from data_pipeline.splits import SPLIT_NAMES
from data_pipeline.store import PointCloudStore


@dataclass
class BuildReport:
    """What a build did (or found already done)."""

    out: Path
    status: str  # "built", "up-to-date", or "empty" (carried by EmptyBuild: nothing written)
    files_seen: int
    clouds_written: int
    n_points: int
    split_counts: dict[str, int]
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    config_hash: str = ""
    components: dict | None = None  # splits.component_summary; None: not recorded

    def failures_by_reason(self) -> dict[str, int]:
        """Failure counts by reason category (text before the first ':', digits masked)."""
        return dict(Counter(_reason_category(r) for _, r in self.failures).most_common())

    def summary(self, with_time: bool = True) -> str:
        """A plain-text table for the CLI (``with_time=False``: without the build's time)."""
        rows = [
            ("store", f"{self.out} ({self.status})"),
            ("files seen", f"{self.files_seen:,}"),
            ("clouds written", f"{self.clouds_written:,}"),
            ("points", f"{self.n_points:,}"),
            ("splits", ", ".join(f"{k} {v:,}" for k, v in self.split_counts.items())),
            *([("split components", self._components())] if self.components else []),
            ("left out", f"{len(self.failures):,} (failures.tsv)"),
            *([("time", f"{self.seconds:.1f} s")] if with_time else []),
            ("config sha256", self.config_hash[:16]),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        by_reason = self.failures_by_reason()
        if by_reason:
            lines.append("left out by reason:")
            lines += [f"{n:>8,}  {reason}" for reason, n in by_reason.items()]
        return "\n".join(lines)


    def _components(self) -> str:
        c = self.components or {}
        share = c.get("largest", 0) / max(1, self.clouds_written)
        text = f"{c.get('count', 0):,}, largest {c.get('largest', 0):,} clouds ({share:.0%}, {c.get('largest_key')})"
        if c.get("oversized"):  # recorded since split rule 3
            text += (f"; {c['oversized']:,} too large for the held-out split they hash to went to the largest split "
                     f"({c['oversized_clouds']:,} clouds)")
        return text


def _reason_category(reason: str) -> str:
    return re.sub(r"\d+", "N", reason.split(":")[0]).strip()


class EmptyBuild(Exception):
    """Every source was left out: no store was written (an existing one is untouched).

    ``report`` lists the failures; they are also saved at ``failures_path``.
    """

    def __init__(self, report: BuildReport, failures_path: Path | None) -> None:
        self.report, self.failures_path = report, failures_path
        by_reason = "; ".join(f"{n} {r}" for r, n in report.failures_by_reason().items()) or "no files"
        first = f"; e.g. {report.failures[0][0]}: {report.failures[0][1]}" if report.failures else ""
        where = f" (all reasons in {failures_path})" if failures_path else ""
        state = "was left as it was" if report.out.exists() else "was not written"
        what = f"all {report.files_seen} source files were left out" if report.files_seen else "no source files"
        super().__init__(f"no clouds: {what} ({by_reason}){where}{first}. {report.out} {state}.")


def report_existing(
    store: PointCloudStore, digest: str, seconds: float, status: str = "up-to-date"
) -> BuildReport:
    """The report of a build that found ``store`` up to date (its config sha256 ``digest``),
    or of an inspection of it (another ``status``); a store without failures.tsv reports
    no failures."""
    failures: list[tuple[str, str]] = []
    try:  # optional in a store (not in REQUIRED_FILES): none means no list
        with open(store.path / "failures.tsv", encoding="utf-8", errors="replace") as fh:
            next(fh, None)
            failures = [tuple(line.rstrip("\n").split("\t", 1)) for line in fh if "\t" in line]  # type: ignore[misc]
    except FileNotFoundError:
        pass
    counts = store.meta.get("counts", {})
    return BuildReport(
        store.path, status, int(store.meta.get("files_seen", 0)), len(store),
        int(counts.get("points", len(store.coords))),
        {k: int(counts.get("splits", {}).get(k, 0)) for k in SPLIT_NAMES},  # meta.json sorts its keys
        failures, seconds, digest, store.meta.get("split_components"),
    )  # fmt: skip
