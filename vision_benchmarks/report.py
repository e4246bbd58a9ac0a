"""Measured results against the paper's Table 1 (the one place its numbers live).

``report(run_dirs)`` reads each ``RUN/results.json`` (never recomputes) and renders a
Markdown table: one row per run with kNN accuracy, the random-init kNN baseline, the
linear probe (mean ± std over probe seeds) and its random-init baseline (the same
network before its first step), the paper's number for that cell and the
gap (measured probe − paper), then the Table 1 grid with the measured value per cell.

A grid cell is filled only by a run of that cell's shipped config
(``configs/<dataset>_<method>.toml``, e.g. ``cifar10_care``) with nothing changed that
Table 1 measures (see :func:`why_left_out`); of several such runs, the one with
the most probe seeds, then the first by name (a hand-written ``results.json`` without
a ``config`` cannot be checked: it fills a cell only when no checked run does, marked so).
Under the grid the report names the run of each cell and, for every other run of a
Table 1 cell, why it was left out.
"""

from __future__ import annotations

import copy
import functools
import json
import sys
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

#: Config keys that do not change what Table 1 measures: how and where a run was executed
#: (``run.*`` but SyncBatchNorm), where its data lives, the kNN monitor, the ``evaluate``
#: measurements, and which probe seeds (more seeds only win ties, see :func:`report`).
FREE_SECTIONS = {"run", "knn", "measure"}
FREE_KEYS = {("data", "root"), ("data", "download"), ("data", "workers"), ("probe", "seeds"),
             ("probe", "random_init")}
BOUND_KEYS = {("run", "sync_bn")}  # in a free section, yet it changes the training
KEY_NAMES = {"method.lam": "λ"}
SHOWN_DIFFERENCES = 3


def paper_number(method: str, dataset: str) -> float | None:
    return PAPER_TABLE1.get(method, {}).get(dataset)


def _fmt(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def load_results(run_dirs) -> list[tuple[str, dict]]:
    """``(run, results)`` of every folder with a readable ``results.json``. Folders without
    one (a run still training, a sweep's output folder, a file) and damaged ones (not a
    JSON object) are skipped with one note on stderr each kind; it is an error only when
    none is left."""
    run_dirs = [str(run) for run in run_dirs]
    out, skipped, damaged = [], [], []
    for run in run_dirs:
        path = Path(run) / "results.json"
        if not path.is_file():
            skipped.append(run)
            continue
        try:
            results = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            damaged.append(f"{path} is not valid JSON ({error})")
            continue
        if not isinstance(results, dict):
            damaged.append(f"{path} holds a {type(results).__name__}, not a JSON object")
            continue
        out.append((run, results))
    if not out and damaged:
        raise ValueError("; ".join(damaged) + (f" (and no results.json in {', '.join(skipped)})" if skipped else ""))
    if not out:
        shown = ", ".join(run_dirs[:5]) + (f" and {len(run_dirs) - 5} more" if len(run_dirs) > 5 else "")
        raise FileNotFoundError(f"no results.json in any of the runs given ({shown or 'none'}): "
                                "run `vision-benchmarks pretrain ... --out RUN` first")
    if skipped:
        print(f"vision-benchmarks: skipping {len(skipped)} folder(s) without results.json (a run still "
              f"training, or not a run folder): {', '.join(skipped)}", file=sys.stderr)
    if damaged:
        print(f"vision-benchmarks: skipping {len(damaged)} damaged results.json: {'; '.join(damaged)}",
              file=sys.stderr)
    return out


def _measured(dotted: str) -> bool:
    key = tuple(dotted.split("."))
    return key in BOUND_KEYS or (key[0] not in FREE_SECTIONS and key not in FREE_KEYS)


def _show(value) -> str:
    from vision_benchmarks.config import UNSET

    return "unset" if value is UNSET else json.dumps(value, ensure_ascii=False)


def table1_differences(cfg: dict, shipped: dict) -> list[str]:
    """The keys of the run config ``cfg`` that differ from the shipped config ``shipped``
    and change what Table 1 measures, as ``"key run-value ≠ shipped-value"``."""
    from vision_benchmarks.config import differing_keys

    return [f"{KEY_NAMES.get(key, key)} {_show(ran)} ≠ {_show(want)}"
            for key, ran, want in differing_keys(cfg, shipped, ignored=lambda key: not _measured(key))]


def why_left_out(res: dict, shipped: dict) -> str | None:
    """None when the run of ``res`` (with a recorded config) may fill the cell of the
    shipped config ``shipped``, else why not. The probe settings are those the probe
    ran with (``probe_config``) once the run has been probed."""
    from vision_benchmarks.config import fill_defaults

    cfg = fill_defaults(copy.deepcopy(res["config"]))
    if isinstance(res.get("probe_config"), dict):
        cfg["probe"] = {**cfg["probe"], **res["probe_config"]}
    if cfg.get("config_file") != shipped["config_file"]:
        return f"config {cfg.get('config_file')} ≠ {shipped['config_file']}"
    diffs = table1_differences(cfg, shipped)
    if not diffs:
        return None
    more = len(diffs) - SHOWN_DIFFERENCES
    shown = ", ".join(diffs[:SHOWN_DIFFERENCES]) + (f" and {more} more" if more > 0 else "")
    return f"{shown} of {Path(shipped['config_file']).stem}"


@functools.cache
def _shipped(method: str, dataset: str) -> dict:
    """The resolved shipped config of a Table 1 cell (read-only for the callers)."""
    from vision_benchmarks.config import CONFIG_DIR, load_config

    return load_config(CONFIG_DIR / f"{dataset}_{method}.toml")


def _seeds(probe: dict) -> int:
    return len(probe.get("per_seed") or probe.get("seeds") or [])


def report(run_dirs) -> str:
    """The Markdown report of the given run folders."""
    rows = [
        "| run | data set | method | epochs | kNN top-1 | kNN random init | linear probe top-1 "
        "| probe random init | paper | gap |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    candidates: dict[tuple[str, str], list[tuple]] = {}
    left_out: list[str] = []
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
        if method not in PAPER_TABLE1 or dataset not in DATASET_ORDER:
            continue  # no Table 1 cell
        unchecked = not isinstance(res.get("config"), dict)  # hand-written results: nothing to compare
        why = None if unchecked else why_left_out(res, _shipped(method, dataset))
        if why is None and measured is None:
            why = "no linear probe yet"
        if why is not None:
            left_out.append(f"- {run} ({METHOD_NAMES[method]} / {dataset}): {why}")
            continue
        cell = f"{measured:.2f} ({gap_text})" if gap is not None else f"{measured:.2f}"
        # checked runs first, then the most probe seeds, then the name
        candidates.setdefault((method, dataset), []).append((unchecked, -_seeds(probe), run, cell))
    grid, filled = {}, []
    for method in PAPER_TABLE1:
        for dataset in DATASET_ORDER:
            if (method, dataset) not in candidates:
                continue
            best, *others = sorted(candidates[(method, dataset)])
            unchecked, minus_seeds, run, grid[(method, dataset)] = best
            notes = [f"{-minus_seeds} probe seed{'' if minus_seeds == -1 else 's'}"]
            if unchecked:
                notes.append("config not recorded, not checked")
            if others:
                notes.append(f"also eligible: {', '.join(other[2] for other in others)}")
            filled.append(f"- {METHOD_NAMES[method]} / {dataset}: {run} ({'; '.join(notes)})")
    lines = ["## Runs", "", *rows, "", "## Table 1: measured linear probe (gap to paper) / paper", "",
             "| method | " + " | ".join(DATASET_ORDER) + " |", "|---|" + "---|" * len(DATASET_ORDER)]
    for method, cells in PAPER_TABLE1.items():
        entries = [f"{grid.get((method, d), '–')} / {_fmt(cells.get(d))}" for d in DATASET_ORDER]
        lines.append(f"| {METHOD_NAMES[method]} | " + " | ".join(entries) + " |")
    if filled:
        lines += ["", "Cells measured by (a run of the cell's shipped config, nothing Table 1 measures changed):",
                  *filled]
    if left_out:
        lines += ["", "Left out of Table 1 (still in the runs table above):", *left_out]
    return "\n".join(lines) + "\n"
