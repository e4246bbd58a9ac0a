"""Which CARE setting keeps the rotation *and* the protein? A grid of demo settings
trained at several step counts, each scored as the demo scores it.

    uv run python benchmarks/sweep_protein_settings.py --store STORE [--steps 200 2000]
        [--device auto] [--seed 0] [--only NAME ...] [--set KEY=VALUE ...] [--out sweep.json]

Every candidate is the demo's shared settings (:data:`protein_care.demo.SHARED_SETTINGS`,
seed 0 unless ``--seed``) plus its own overrides, trained for each step count and evaluated on the
validation split (``--split val``, the default: settings are chosen there, and the demo
reports the test split they were not chosen on) with the demo's evaluation (:func:`protein_care.demo.collect_run`, no progress
snapshots). The table gives, per candidate and step count: the linear/MLP PC1 probe
errors, ``wahba_relative_mean``, rotation retrieval, the trajectories' speed CV, and
which of the demo's four claims hold against SimCLR at the same step count
(:func:`protein_care.claims.assess_claims`: P = PC1, W = Wahba, L = loops, R = retrieval).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protein_care.claims import assess_claims  # noqa: E402
from protein_care.demo import SHARED_SETTINGS, _train, collect_run, fit_batch_size  # noqa: E402
from protein_care.options import DEFAULTS  # noqa: E402

#: (name, overrides of SHARED_SETTINGS). "SimCLR" is the reference of every claim.
CANDIDATES: list[tuple[str, dict]] = [
    ("SimCLR", {"loss": "simclr", "inv_augment": "rotation"}),
    ("CARE λ=1", {"loss": "care", "lam": 1.0, "inv_augment": "rotation"}),
    ("CARE λ=10", {"loss": "care", "lam": 10.0, "inv_augment": "rotation"}),
    ("CARE λ=30", {"loss": "care", "lam": 30.0, "inv_augment": "rotation"}),
    ("CARE λ=100", {"loss": "care", "lam": 100.0, "inv_augment": "rotation"}),
    ("CARE points λ=3", {"loss": "care", "lam": 3.0, "inv_augment": "points"}),
    ("CARE points λ=10", {"loss": "care", "lam": 10.0, "inv_augment": "points"}),
    ("CARE points λ=30", {"loss": "care", "lam": 30.0, "inv_augment": "points"}),
    ("CARE points λ=100", {"loss": "care", "lam": 100.0, "inv_augment": "points"}),
    ("CARE points λ=300", {"loss": "care", "lam": 300.0, "inv_augment": "points"}),
    ("CARE points λ=1000", {"loss": "care", "lam": 1000.0, "inv_augment": "points"}),
    ("CARE split λ=1", {"loss": "care", "lam": 1.0, "embedding": "split"}),
    ("CARE split λ=10", {"loss": "care", "lam": 10.0, "embedding": "split"}),
    # one Haar pose per cloud shared by both invariance views (tried against the drift: no better)
    ("CARE posed-points λ=30", {"loss": "care", "lam": 30.0, "inv_augment": "posed-points"}),
    ("CARE split λ=1 posed", {"loss": "care", "lam": 1.0, "embedding": "split", "inv_augment": "posed-points"}),
    # μ·orbit similarity of block B's equivariance views (not in the paper; --anti-invariance)
    ("CARE split λ=1 anti=1", {"loss": "care", "lam": 1.0, "embedding": "split", "anti_invariance": 1.0}),
    ("CARE split λ=1 anti=0.3", {"loss": "care", "lam": 1.0, "embedding": "split", "anti_invariance": 0.3}),
    # the same term on a single embedding: with rotation-free invariance views it does not
    # fight InfoNCE's alignment; with Haar-rotated ones it does (alignment wants the
    # rotated views alike, the term wants them apart)
    ("CARE points λ=30 anti=1", {"loss": "care", "lam": 30.0, "inv_augment": "points", "anti_invariance": 1.0}),
    ("CARE λ=30 anti=1", {"loss": "care", "lam": 30.0, "inv_augment": "rotation", "anti_invariance": 1.0}),
]
CLAIM_LETTERS = {"PC1": "P", "Wahba": "W", "loops": "L", "knows the protein": "R"}


def claim_flags(claims: list[dict], label: str) -> str:
    """'PWLR'-style string of the claims that hold for ``label`` (lower case: fails)."""
    out = ""
    for key, letter in CLAIM_LETTERS.items():
        match = [c for c in claims if c["claim"].startswith(label) and key in c["claim"]]
        out += (letter if match[0]["holds"] else letter.lower()) if match else "-"
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", required=True, help="point-cloud store (e.g. the demo's DIR/store)")
    parser.add_argument("--steps", type=int, nargs="+", default=[200, 2000])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0, help="training seed of every run (the demo's is 0)")
    parser.add_argument("--only", nargs="+", default=None, help="candidate names to run (SimCLR always runs)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override shared settings, e.g. --set hidden=64 train_points=128 (numbers parsed as JSON)")
    parser.add_argument("--split", choices=("val", "test"), default="val",
                        help="split the candidates are scored on (default: val; the demo reports test)")
    parser.add_argument("--runs", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)

    from data_pipeline.store import PointCloudStore
    from protein_care.devices import resolve_device
    from protein_care.trajectories import sample_ids

    shared = dict(SHARED_SETTINGS)
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or key not in DEFAULTS:
            parser.error(f"--set {item}: expected KEY=VALUE with a training setting as KEY "
                         f"(one of protein_care.options.DEFAULTS)")
        try:
            shared[key] = json.loads(value)
        except json.JSONDecodeError:
            shared[key] = value
    device = str(resolve_device(args.device))
    store = PointCloudStore(args.store)
    batch_size = fit_batch_size(len(store.split("train")))
    ids = sample_ids(store, 3, seed=0, split=args.split)
    chosen = [(n, s) for n, s in CANDIDATES if n == "SimCLR" or not args.only or n in args.only]
    rows, started = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        runs_root = args.runs or Path(tmp)
        for steps in args.steps:
            entries = []
            for name, settings in chosen:
                run_dir = _train(name, {**shared, **settings}, Path(args.store), runs_root / f"steps{steps}",
                                 steps=steps, seed=args.seed, device=device, batch_size=batch_size, log=lambda *_: None)
                entry = collect_run(run_dir, store, name=name, trajectory_ids=ids, out_dir=runs_root / "out",
                                    device=device, progress_checkpoints=False, split=args.split,
                                    log=lambda *_: None)
                entries.append(entry)
            baseline = next((e["baseline"] for e in entries if e.get("baseline")), None)
            for entry in entries:
                label = "CARE" if entry["name"] != "SimCLR" else None
                claims = assess_claims([entries[0], {**entry, "name": "CARE"}], baseline) if label else []
                m = entry["metrics"]
                rows.append({"name": entry["name"], "steps": steps, "train_seconds": entry["train_seconds"],
                             "pc1_linear": m.get("pc1_angle_deg_mean"), "pc1_mlp": m.get("pc1_mlp_angle_deg_mean"),
                             "wahba_relative": m.get("wahba_relative_mean"), "retrieval": m.get("retrieval_top1"),
                             "speed_cv": m.get("loop_speed_cv_mean"),
                             "random_init_retrieval": (baseline or {}).get("retrieval_top1"),
                             "claims": claim_flags(claims, "CARE") if label else "ref"})
                print(json.dumps(rows[-1]), flush=True)
    header = f"{'setting':<20} {'steps':>5} {'PC1 lin':>7} {'PC1 mlp':>7} {'W rel':>6} {'retr':>5} {'CV':>5} {'claims':>6}"
    lines = [f"device {device}; store {args.store}; split {args.split}; batch {batch_size}; seed {args.seed}; "
             f"settings {args.set or 'demo'}; "
             f"{time.perf_counter() - started:.0f} s", "",
             header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['name']:<20} {r['steps']:>5} {r['pc1_linear']:>7.1f} {r['pc1_mlp']:>7.1f} "
                     f"{r['wahba_relative']:>6.3f} {r['retrieval']:>5.2f} {r['speed_cv']:>5.2f} {r['claims']:>6}")
    print("\n".join(lines))
    if args.out:
        args.out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "device": device, "seed": args.seed, "settings": shared,
                                        "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
