"""What a demo or comparison shows, checked on the measured numbers: the paper's protein
claims against SimCLR (:func:`assess_claims`) and whether each CARE run kept the rotation
as training went on (:func:`assess_stability`)."""

from __future__ import annotations

import math

#: A run "loses the rotation" when its PC1 error at the end exceeds its best during
#: training by more than both of these (degrees, and a fraction of the best).
DRIFT_DEGREES = 3.0
DRIFT_FRACTION = 0.5


#: Run names the claims are checked for, each against the run named :data:`CLAIMS_REFERENCE`.
CLAIMS_RUNS = ("CARE", "CARE points", "CARE split")
CLAIMS_REFERENCE = "SimCLR"
#: How to name runs so that the claims are checked (``compare`` help and note).
CLAIMS_NAMING = (f"the paper's claims are checked for a run named {CLAIMS_RUNS[0]} (or "
                 f"{', '.join(repr(n) for n in CLAIMS_RUNS[1:])}) against one named {CLAIMS_REFERENCE} "
                 "(names are case-sensitive): name them with NAME=RUN, e.g. CARE=runs/care SimCLR=runs/simclr")


def claims_note(names) -> str | None:
    """Why no claim can be checked (no run named as :func:`assess_claims` expects), or
    None when at least one pair of names is there."""
    names = set(names)
    if CLAIMS_REFERENCE in names and names & set(CLAIMS_RUNS):
        return None
    return f"no claim of the paper was checked: {CLAIMS_NAMING}"


def assess_claims(runs: list[dict], baseline: dict | None) -> list[dict]:
    """The paper's protein claims, checked on the measured numbers (issue 6 §6), for the
    runs named in :data:`CLAIMS_RUNS` against the one named :data:`CLAIMS_REFERENCE`."""
    by_name = {r["name"]: r["metrics"] for r in runs}
    claims = []
    simclr = by_name.get(CLAIMS_REFERENCE)
    chance = math.degrees(1.0)

    def add(text, holds, evidence):
        claims.append({"claim": text, "holds": bool(holds), "evidence": evidence})

    for label in CLAIMS_RUNS:
        model = by_name.get(label)
        if model is None or simclr is None:
            continue
        a, b = model.get("pc1_angle_deg_mean"), simclr.get("pc1_angle_deg_mean")
        if a is not None and b is not None:
            mlp_a, mlp_b = model.get("pc1_mlp_angle_deg_mean"), simclr.get("pc1_mlp_angle_deg_mean")
            mlp = f"; MLP probe {mlp_a:.1f}° vs {mlp_b:.1f}°" if mlp_a is not None and mlp_b is not None else ""
            add(f"{label}'s PC1 error is clearly below SimCLR's and far below chance",
                a <= 0.5 * b and a < chance / 4, f"linear probe {a:.1f}° vs SimCLR {b:.1f}°{mlp}; chance {chance:.1f}° "
                "(clearly: at most half SimCLR's linear-probe error; far: under a quarter of chance)")
        a, b = model.get("wahba_relative_mean"), simclr.get("wahba_relative_mean")
        if a is not None and b is not None:
            add(f"{label}'s relative Wahba error is below SimCLR's", a < b,
                f"{a:.3f} vs SimCLR {b:.3f} (raw W_f/√n {model.get('wahba_error_mean'):.4f} vs {simclr.get('wahba_error_mean'):.4f})")
        a, b = model.get("loop_speed_cv_mean"), simclr.get("loop_speed_cv_mean")
        if a is not None and b is not None:
            add(f"{label}'s trajectories are regular loops (speed CV below SimCLR's)", a < b,
                f"speed CV {a:.2f} vs SimCLR {b:.2f} (0 = an orthogonal action)")
        r, s = model.get("retrieval_top1"), simclr.get("retrieval_top1")
        base = (baseline or {}).get("retrieval_top1")
        if r is not None and s is not None and base is not None:
            add(f"{label} still knows the protein: retrieval close to SimCLR's and far above the random-init baseline",
                r >= 0.75 * s and r >= 2 * base, f"{r:.3f} vs SimCLR {s:.3f}, random init {base:.3f}")
    return claims


def assess_stability(runs: list[dict]) -> list[dict]:
    """Whether each CARE run kept the rotation during training (issue 6 §5: a longer
    budget should not make CARE worse), read from its progress points (PC1 error on the
    test split at snapshots and at the end).

    A run is ``kept`` unless its final PC1 error exceeds its best earlier one by more than
    :data:`DRIFT_DEGREES` and by more than :data:`DRIFT_FRACTION` of that best. Runs
    without a CARE loss (SimCLR and the other invariant objectives lose the rotation by
    design) and runs with fewer than two progress points are skipped."""
    out = []
    for run in runs:
        if run.get("loss") != "care":
            continue
        points = [p for p in run.get("progress") or [] if p.get("pc1_angle_deg_mean") is not None]
        if len(points) < 2:
            continue
        points.sort(key=lambda p: p["step"])
        end = points[-1]
        best = min(points[:-1], key=lambda p: p["pc1_angle_deg_mean"])
        rise = end["pc1_angle_deg_mean"] - best["pc1_angle_deg_mean"]
        kept = not (rise > DRIFT_DEGREES and rise > DRIFT_FRACTION * best["pc1_angle_deg_mean"])
        where = f"{best['pc1_angle_deg_mean']:.1f}° at step {best['step']} ({best['fraction']:.0%} of training)"
        if kept:
            text = (f"{run['name']} kept the rotation: PC1 error {end['pc1_angle_deg_mean']:.1f}° at the end, "
                    f"lowest before the end {where}")
        else:
            text = (f"{run['name']} is losing the rotation as training goes on: PC1 error rose from {where} to "
                    f"{end['pc1_angle_deg_mean']:.1f}° at the end; a longer budget will make it worse "
                    "(README, \"What keeps the rotation\")")
        out.append({"name": run["name"], "kept": kept, "pc1_best": best["pc1_angle_deg_mean"], "best_step": best["step"],
                    "pc1_end": end["pc1_angle_deg_mean"], "end_step": end["step"], "text": text})
    return out
