"""Measured results against the paper's Table 1 (the one place its numbers live).

``report(run_dirs)`` reads each ``RUN/results.json`` (never recomputes) and renders a
Markdown table: one row per run with kNN accuracy, the random-init kNN baseline, the
linear probe (mean ± std over probe seeds) and its random-init baseline (the same
network before its first step), the paper's number for that cell and the
gap (measured probe − paper), then the Table 1 grid with the measured value per cell.
"""

from __future__ import annotations

import json
from pathlib import Path

#: CARE paper, Table 1: top-1 linear-probe accuracy (%), mean of 3 probe seeds.
#: Rows: method key (see ``train.method_label``); columns: data set. None: not reported.
PAPER_TABLE1: dict[str, dict[str, float | None]] = {
    "simclr": {"cifar10": 90.98, "cifar100": 66.77, "stl10": 84.19, "imagenet100": 72.79},
    "moco": {"cifar10": 91.95, "cifar100": 69.88, "stl10": None, "imagenet100": 73.50},
    "care": {"cifar10": 91.92, "cifar100": 68.05, "stl10": 84.64, "imagenet100": 76.69},
    "care-moco": {"cifar10": 92.19, "cifar100": 70.56, "stl10": 88.97, "imagenet100": 74.30},
}
METHOD_NAMES = {"simclr": "SimCLR", "moco": "MoCo-v2", "care": "CARE (SimCLR)", "care-moco": "CARE (MoCo-v2)"}
DATASET_ORDER = ("cifar10", "cifar100", "stl10", "imagenet100")


def paper_number(method: str, dataset: str) -> float | None:
    return PAPER_TABLE1.get(method, {}).get(dataset)


def _fmt(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def load_results(run_dirs) -> list[tuple[str, dict]]:
    out = []
    for run in run_dirs:
        path = Path(run) / "results.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run `vision-benchmarks pretrain ... --out {run}` first")
        with open(path) as f:
            out.append((str(run), json.load(f)))
    return out


def report(run_dirs) -> str:
    """The Markdown report of the given run folders."""
    rows = [
        "| run | data set | method | epochs | kNN top-1 | kNN random init | linear probe top-1 "
        "| probe random init | paper | gap |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    grid: dict[tuple[str, str], str] = {}
    for run, res in load_results(run_dirs):
        dataset, method = res.get("dataset"), res.get("method")
        probe = res.get("linear_probe_top1")
        paper = paper_number(method, dataset)
        measured = probe["mean"] if probe else None
        gap = measured - paper if measured is not None and paper is not None else None
        probe_text = f"{probe['mean']:.2f} ± {probe['std']:.2f}" if probe else "–"
        baseline = res.get("linear_probe_top1_random_init")
        baseline_text = f"{baseline['mean']:.2f} ± {baseline['std']:.2f}" if baseline else "–"
        gap_text = "–" if gap is None else f"{gap:+.2f}"
        rows.append(
            f"| {run} | {dataset} | {METHOD_NAMES.get(method, method)} | {res.get('epochs')} | "
            f"{_fmt(res.get('knn_top1'))} | {_fmt(res.get('knn_top1_random_init'))} | {probe_text} | {baseline_text} | "
            f"{_fmt(paper)} | {gap_text} |"
        )
        if measured is not None and (method, dataset) not in grid:
            grid[(method, dataset)] = f"{measured:.2f} ({gap_text})" if gap is not None else f"{measured:.2f}"
    lines = ["## Runs", "", *rows, "", "## Table 1: measured linear probe (gap to paper) / paper", "",
             "| method | " + " | ".join(DATASET_ORDER) + " |", "|---|" + "---|" * len(DATASET_ORDER)]
    for method, cells in PAPER_TABLE1.items():
        entries = [f"{grid.get((method, d), '–')} / {_fmt(cells.get(d))}" for d in DATASET_ORDER]
        lines.append(f"| {METHOD_NAMES[method]} | " + " | ".join(entries) + " |")
    return "\n".join(lines) + "\n"
