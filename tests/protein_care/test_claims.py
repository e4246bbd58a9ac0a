"""The claims a demo or comparison checks on its numbers (protein_care.claims)."""

import pytest

from protein_care.claims import DRIFT_DEGREES, assess_claims, assess_stability


def metrics(pc1, relative, speed_cv, retrieval):
    return {"pc1_angle_deg_mean": pc1, "wahba_relative_mean": relative, "wahba_error_mean": 0.01,
            "loop_speed_cv_mean": speed_cv, "retrieval_top1": retrieval}


def test_claims_hold_for_an_equivariant_run_that_knows_the_protein():
    runs = [
        {"name": "SimCLR", "metrics": metrics(30.0, 0.9, 0.8, 0.50)},
        {"name": "CARE points", "metrics": metrics(2.0, 0.2, 0.1, 0.45)},
    ]
    claims = assess_claims(runs, {"retrieval_top1": 0.05})
    assert len(claims) == 4 and all(c["holds"] for c in claims)


CLAIMS = {  # the four claims for a run named CARE, by the condition each one checks
    "pc1": "CARE's PC1 error is clearly below SimCLR's and far below chance",
    "wahba": "CARE's relative Wahba error is below SimCLR's",
    "loops": "CARE's trajectories are regular loops (speed CV below SimCLR's)",
    "retrieval": "CARE still knows the protein: retrieval close to SimCLR's and far above the random-init baseline",
}


def holds_by_claim(simclr, care, baseline_retrieval):
    runs = [{"name": "SimCLR", "metrics": simclr}, {"name": "CARE", "metrics": care}]
    claims = assess_claims(runs, {"retrieval_top1": baseline_retrieval})
    assert [c["claim"] for c in claims] == list(CLAIMS.values())  # all four, none dropped
    return {key: c["holds"] for key, c in zip(CLAIMS, claims)}


def test_claims_fail_when_the_numbers_do_not_show_them():
    holds = holds_by_claim(metrics(6.0, 0.5, 0.3, 0.50), metrics(4.0, 0.6, 0.4, 0.06), 0.05)
    assert holds == dict.fromkeys(CLAIMS, False)


# Against SimCLR (30°, 0.9, 0.8, 0.50) and a baseline retrieval of 0.05, CARE (2°, 0.2, 0.1,
# 0.45) holds all four claims; each case below changes one number so that exactly one
# condition fails. Chance is 57.3°, so "far below chance" means under 14.3°.
SIMCLR = metrics(30.0, 0.9, 0.8, 0.50)
CARE = metrics(2.0, 0.2, 0.1, 0.45)


@pytest.mark.parametrize("simclr, care, baseline, failing", [
    pytest.param(SIMCLR, CARE, 0.05, None, id="all-hold"),
    # at each bound (10° = half of 20°, 0.375 = 0.75 · 0.5 = 2 · 0.1875) every claim holds
    pytest.param(metrics(20.0, 0.9, 0.8, 0.50), metrics(10.0, 0.2, 0.1, 0.375), 0.1875, None, id="all-hold-at-bounds"),
    pytest.param(metrics(40.0, 0.9, 0.8, 0.50), {**CARE, "pc1_angle_deg_mean": 15.0}, 0.05, "pc1",
                 id="pc1-half-of-simclr-but-not-under-chance-over-4"),
    pytest.param(metrics(20.0, 0.9, 0.8, 0.50), {**CARE, "pc1_angle_deg_mean": 12.0}, 0.05, "pc1",
                 id="pc1-under-chance-over-4-but-not-half-of-simclr"),
    pytest.param(SIMCLR, {**CARE, "wahba_relative_mean": 0.9}, 0.05, "wahba", id="wahba-equal-is-not-below"),
    pytest.param(SIMCLR, {**CARE, "loop_speed_cv_mean": 0.8}, 0.05, "loops", id="speed-cv-equal-is-not-below"),
    pytest.param(SIMCLR, {**CARE, "retrieval_top1": 0.30}, 0.05, "retrieval",
                 id="retrieval-6x-baseline-but-under-0.75-simclr"),
    pytest.param(SIMCLR, CARE, 0.30, "retrieval", id="retrieval-0.9-simclr-but-under-2x-baseline"),
])
def test_each_condition_of_each_claim_decides_it_alone(simclr, care, baseline, failing):
    expected = {key: key != failing for key in CLAIMS}
    assert holds_by_claim(simclr, care, baseline) == expected


def care_run(name, pc1_by_step, loss="care"):
    total = max(pc1_by_step)
    return {"name": name, "loss": loss,
            "progress": [{"step": s, "fraction": s / total, "pc1_angle_deg_mean": v} for s, v in pc1_by_step.items()]}


def test_stability_flags_a_run_whose_pc1_error_grows_and_keeps_a_steady_one():
    runs = [
        care_run("CARE", {250: 8.1, 500: 10.0, 750: 15.2, 1000: 21.4}),  # the drift measured at 1,000 → 3,000 steps
        care_run("CARE split", {250: 11.0, 500: 12.5, 750: 13.0, 1000: 13.9}),  # a worse solution, but not a drift
        care_run("SimCLR", {250: 6.0, 1000: 56.0}, loss="simclr"),  # invariant by design: not assessed
        care_run("CARE short", {4: 9.0}),  # one point: nothing to compare
    ]
    items = {s["name"]: s for s in assess_stability(runs)}
    assert set(items) == {"CARE", "CARE split"}
    assert not items["CARE"]["kept"] and items["CARE"]["pc1_best"] == 8.1 and items["CARE"]["best_step"] == 250
    assert "losing the rotation" in items["CARE"]["text"] and "21.4°" in items["CARE"]["text"]
    assert items["CARE split"]["kept"] and items["CARE split"]["pc1_end"] == 13.9


@pytest.mark.parametrize("end, kept", [(4.0 + DRIFT_DEGREES, True), (4.0 + DRIFT_DEGREES + 0.1, False), (1.0, True)])
def test_stability_needs_a_rise_of_both_degrees_and_a_fraction_of_the_best(end, kept):
    # best 4.0°: half of it is 2.0°, so the degree threshold decides; unordered progress points are sorted
    (item,) = assess_stability([care_run("CARE", {1000: end, 250: 4.0, 500: 5.0})])
    assert item["kept"] is kept and item["end_step"] == 1000
    (small,) = assess_stability([care_run("CARE", {250: 0.5, 1000: 0.5 + DRIFT_DEGREES + 0.5})])
    assert not small["kept"]  # 3.5° on a best of 0.5°: both thresholds passed
    (large,) = assess_stability([care_run("CARE", {250: 20.0, 1000: 29.0})])
    assert large["kept"]  # 9° on a best of 20°: under half of it
