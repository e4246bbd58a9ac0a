"""``vision-benchmarks sweep RUN... --out DIR``: figures built from several finished runs.

Reads each ``RUN/results.json`` (and ``RUN/evaluation.json`` when ``evaluate`` has run);
never recomputes. Accuracy is the linear probe's mean ± std when every run of a figure
has one, else the kNN monitor for all of them (the figure's axis says which).

- ``lambda_sweep.html`` (Fig. 8): accuracy vs λ of the CARE runs (loss ``care``), one
  line per data set and framework; runs of the same group with λ-free InfoNCE
  (loss ``simclr``) are dashed baselines. The paper finds the best λ in [0.01, 0.1].
- ``ablations.html`` (Fig. 7): one bar per SimCLR-framework run, by objective: L_inv,
  L_unif, L_equi + L_unif, InfoNCE, CARE (``protein_care.losses.LOSS_VARIANTS``).
- ``wahba.html``, ``gamma.html``, ``cosines.html``, ``gamma_training.html``: the
  evaluate measurements of the runs side by side (Figs. 2c/3, 6, 5); runs of one data
  set share their (x, a) pairs, so points of one augmentation are joined across runs.
- ``sweep.json``: the numbers behind the figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from data_pipeline.atomic_files import write_text_atomic
from vision_benchmarks import figures
from vision_benchmarks.report import load_results

ABLATION_ORDER = ("inv", "unif", "equi-unif", "simclr", "care")
ABLATION_LABELS = {"inv": "L_inv", "unif": "L_unif", "equi-unif": "L_equi + L_unif", "simclr": "InfoNCE",
                   "care": "CARE"}
EQUIVARIANT = ("care", "equi-unif")


def collect(run_dirs) -> list[dict]:
    """One entry per run: data set, framework, loss, λ, accuracies, evaluation (or None)."""
    entries = []
    for run, res in load_results(run_dirs):
        method = res.get("config", {}).get("method", {})
        probe = res.get("linear_probe_top1") or {}
        path = Path(run) / "evaluation.json"
        entries.append({
            "run": run, "name": Path(run).name, "dataset": res.get("dataset"), "framework": method.get("framework"),
            "loss": method.get("loss"), "lam": method.get("lam"), "probe": probe.get("mean"),
            "probe_std": probe.get("std", 0.0), "knn": res.get("knn_top1"), "history": res.get("history", []),
            "evaluation": _evaluation(path),
        })
    return entries


def _evaluation(path: Path) -> dict | None:
    """A run's evaluation.json, or None without one; a damaged one is left out with a note."""
    if not path.is_file():
        return None
    try:
        evaluation = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        print(f"vision-benchmarks sweep: leaving out {path}: not valid JSON ({error})", file=sys.stderr)
        return None
    return evaluation


def evaluated_by_label(entries: list[dict]) -> dict[str, dict]:
    """The evaluated entries by their figure label; two runs with the same label (folders
    of one name under different parents) are told apart by their path, not merged."""
    out: dict[str, dict] = {}
    for e in entries:
        if not e["evaluation"]:
            continue
        label = e["evaluation"]["label"]
        if label in out and out[label]["run"] != e["run"]:
            label = f"{label} [{e['run']}]"
        out.setdefault(label, e)
    return out


def _metric(entries: list[dict]):
    """(axis title, entry → (mean, std)): the probe if every entry has one, else kNN."""
    if entries and all(e["probe"] is not None for e in entries):
        return "linear probe top-1 (%)", lambda e: (e["probe"], e["probe_std"] or 0.0)
    return "kNN top-1 (%)", lambda e: (e["knn"], 0.0)


def lambda_groups(entries: list[dict]) -> tuple[str, dict]:
    """Fig. 8 groups ``"<dataset> / <framework>"`` → CARE points (λ > 0) and baselines."""
    chosen = [e for e in entries if e["loss"] == "care" and e["lam"] and e["lam"] > 0]
    keys = {(e["dataset"], e["framework"]) for e in chosen}
    baselines = [e for e in entries if e["loss"] == "simclr" and (e["dataset"], e["framework"]) in keys]
    title, value = _metric(chosen + baselines)
    groups: dict[str, dict] = {}
    for dataset, framework in sorted(keys):
        group = {"points": [], "baselines": []}
        for e in chosen:
            if (e["dataset"], e["framework"]) == (dataset, framework):
                group["points"].append((e["lam"], *value(e), e["name"]))
        for e in baselines:
            if (e["dataset"], e["framework"]) == (dataset, framework):
                group["baselines"].append((value(e)[0], e["name"]))
        groups[f"{dataset} / {framework}"] = group
    return title, groups


def ablation_groups(entries: list[dict]) -> tuple[str, dict]:
    """Fig. 7 bars per data set (SimCLR framework), ordered L_inv → CARE, then by λ."""
    chosen = [e for e in entries if e["framework"] == "simclr" and e["loss"] in ABLATION_ORDER]
    title, value = _metric(chosen)
    groups: dict[str, list] = {}
    for dataset in sorted({e["dataset"] for e in chosen}):
        rows = sorted((e for e in chosen if e["dataset"] == dataset),
                      key=lambda e: (ABLATION_ORDER.index(e["loss"]), e["lam"] or 0.0, e["name"]))
        labels = [ABLATION_LABELS[e["loss"]] + (f" λ={e['lam']:g}" if e["loss"] in EQUIVARIANT else "")
                  for e in rows]
        bars = []
        for e, label in zip(rows, labels):
            if labels.count(label) > 1:
                label = f"{label} ({e['name']})"
            bars.append((label, *value(e), e["name"]))
        groups[dataset] = bars
    return title, groups


def write_sweep(run_dirs, out_dir: str | Path) -> dict:
    """Write the figures and ``sweep.json`` into ``out_dir``; return the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = collect(run_dirs)
    written: dict[str, object] = {}
    lam_metric, lam_groups = lambda_groups(entries)
    if lam_groups:
        written["lambda_sweep"] = figures.lambda_sweep_figure(lam_groups, lam_metric, "Fig. 8: accuracy vs λ")
    abl_metric, abl_groups = ablation_groups(entries)
    if abl_groups:
        written["ablations"] = figures.ablation_figure(abl_groups, abl_metric, "Fig. 7: loss ablations")
    evaluated = evaluated_by_label(entries)
    if evaluated:
        records = {label: e["evaluation"]["augmentations"] for label, e in evaluated.items()}
        bins = {e["evaluation"]["histogram_bins"] for e in evaluated.values()}
        written["wahba"] = figures.augmentation_scatter(records, "wahba_error", "Fig. 2c/3: Wahba error per run")
        written["gamma"] = figures.augmentation_scatter(records, "gamma", "Relative equivariance γ_f per run")
        if len(bins) == 1:
            written["cosines"] = figures.cosine_histogram_figure(records, bins.pop(),
                                                                 "Fig. 6: cos(f(x), f(a(x))) per augmentation type")
        written["gamma_training"] = figures.training_curve_figure(
            {label: e["evaluation"]["training"] for label, e in evaluated.items()},
            {label: e["history"] for label, e in evaluated.items()}, "Fig. 5: relative equivariance over training")
    paths = {name: str(figures.write_html(fig, out_dir / f"{name}.html")) for name, fig in written.items()}
    summary = {
        "runs": [{k: v for k, v in e.items() if k not in ("evaluation", "history")} |
                 {"evaluation_summary": e["evaluation"]["summary"] if e["evaluation"] else None} for e in entries],
        "lambda_sweep": {"metric": lam_metric, "groups": lam_groups},
        "ablations": {"metric": abl_metric, "groups": abl_groups},
        "figures": paths,
    }
    write_text_atomic(out_dir / "sweep.json", json.dumps(summary, indent=2, allow_nan=False))
    return summary
