"""``vision-benchmarks evaluate RUN``: the paper's measurements of one run → ``RUN/evaluation.json``
and ``RUN/figures/*.html``.

- ``augmentations``: W_f, γ_f and cos statistics for ``measure.augmentations`` sampled
  single augmentations on ``measure.images`` test images (:mod:`vision_benchmarks.measure`;
  Figs. 2c/3 and 6) → ``figures/wahba.html``, ``gamma.html``, ``cosines.html``;
- ``training``: the mean γ_f and W_f over the same augmentations at every encoder
  snapshot (``run.snapshot_every``; only the final weights when there is none; Fig. 5)
  → ``figures/gamma_training.html``;
- ``flowers``: the Flowers-102 colour-jitter retrieval when ``measure.flowers_root`` is
  set (:mod:`vision_benchmarks.flowers`; Fig. 4) → ``figures/flowers_retrieval.html``.

The images and augmentations depend only on ``measure.seed`` and the data set, so runs
of one data set are measured on the same (x, a) pairs and ``vision-benchmarks sweep``
can compare them point by point. Every file is written atomically.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from data_pipeline.atomic_files import write_text_atomic
from vision_benchmarks import figures
from vision_benchmarks.measure import (
    augmentation_geometry,
    image_subset,
    sample_augmentations,
    summarize,
)
from vision_benchmarks.train import RESULTS, method_label, read_json, snapshot_paths

EVALUATION = "evaluation.json"
FIGURES = "figures"


def _curve_point(epoch, records: list[dict]) -> dict:
    s = summarize(records)
    return {"epoch": epoch, "gamma_mean": s["gamma_mean"], "gamma_median": s["gamma_median"],
            "wahba_mean": s["wahba_mean"], "cos_var_mean": s["cos_var_mean"]}


def run_label(run_dir: Path, cfg: dict) -> str:
    return f"{Path(run_dir).name} ({method_label(cfg)}, λ={cfg['method']['lam']:g})"


def measure_run(run_dir: str | Path, cfg: dict, method, data, augment, *, amp: bool = False) -> dict:
    """Measure the run's final encoder (and its snapshots); write and return evaluation.json."""
    run_dir = Path(run_dir)
    m = cfg["measure"]
    encoder = method.encoder
    device = next(encoder.parameters()).device
    images = data.test[image_subset(data.test, m["images"], m["seed"]).to(data.test.device)].to(device)
    height, width = images.shape[-2:]
    augmentations = [(kind, p._map(lambda t: t.to(device))) for kind, p in sample_augmentations(
        m["augmentations"], height, width, augment.config, torch.Generator().manual_seed(m["seed"]))]
    geometry = dict(space=m["space"], bins=m["histogram_bins"], amp=amp)
    records = augmentation_geometry(encoder, images, augment, augmentations, **geometry)

    results = read_json(run_dir / RESULTS) if (run_dir / RESULTS).is_file() else {}
    final_epoch = results.get("epochs")
    training, snapshot_encoder = [], copy.deepcopy(encoder)
    for path in snapshot_paths(run_dir):
        snap = torch.load(path, map_location=device, weights_only=True)
        snapshot_encoder.load_state_dict(snap["encoder"])
        training.append(_curve_point(snap["epoch"], augmentation_geometry(
            snapshot_encoder, images, augment, augmentations, **geometry)))
    if not training or training[-1]["epoch"] != final_epoch:
        training.append(_curve_point(final_epoch, records))

    label = run_label(run_dir, cfg)
    out = {
        "run": str(run_dir), "label": label, "dataset": cfg["dataset"], "method": method_label(cfg),
        "lam": cfg["method"]["lam"], "proj_dim": cfg["model"]["proj_dim"], "space": m["space"],
        "images": int(images.shape[0]), "seed": m["seed"], "histogram_bins": m["histogram_bins"],
        "summary": summarize(records), "augmentations": records, "training": training,
        "history": results.get("history", []), "figures": {},
    }
    fig_dir = run_dir / FIGURES
    n_aug = len(records)
    s1 = "S¹ experiment, " if m["space"] == "projection" and cfg["model"]["proj_dim"] == 2 else ""
    written = {
        "wahba": figures.augmentation_scatter({label: records}, "wahba_error",
                                              f"Fig. 2c/3: Wahba error over {n_aug} sampled augmentations"),
        "gamma": figures.augmentation_scatter({label: records}, "gamma",
                                              f"Relative equivariance γ_f over {n_aug} sampled augmentations"),
        "cosines": figures.cosine_histogram_figure(
            {label: records}, m["histogram_bins"],
            f"Fig. 6 ({s1}d = {cfg['model']['proj_dim'] if m['space'] == 'projection' else 'backbone'}): "
            "cos(f(x), f(a(x))) per augmentation type"),
        "gamma_training": figures.training_curve_figure({label: training}, {label: out["history"]},
                                                        "Fig. 5: relative equivariance over training"),
    }
    if m["flowers_root"]:
        from vision_benchmarks.flowers import (
            colour_jitter_retrieval,
            load_flowers102,
            mosaic,
        )

        gallery, _ = load_flowers102(m["flowers_root"], m["flowers_split"], augment.config.size,
                                     download=m["flowers_download"], max_images=m["flowers_max_images"])
        retrieval = colour_jitter_retrieval(encoder, gallery, augment, queries=m["flowers_queries"],
                                            k=m["flowers_k"], space=m["flowers_space"], seed=m["seed"], amp=amp)
        written["flowers_retrieval"] = figures.retrieval_figure(
            mosaic(retrieval).numpy(), f"Fig. 4: Flowers-102 colour-jitter retrieval, {label}: per query, "
            f"[x | {retrieval['k']} nearest] then [jittered x | {retrieval['k']} nearest]; "
            f"mean overlap {retrieval['mean_overlap']:.2f}")
        retrieval.pop("images")
        out["flowers"] = retrieval
    else:
        out["flowers"] = {"skipped": "measure.flowers_root is empty (set it to a folder holding flowers-102/)"}
    for name, fig in written.items():
        figures.write_html(fig, fig_dir / f"{name}.html")
        out["figures"][name] = f"{FIGURES}/{name}.html"
    write_text_atomic(run_dir / EVALUATION, json.dumps(out, indent=2, allow_nan=False))
    return out
