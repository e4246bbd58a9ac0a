"""The PC1 probe: sign-free target, ridge λ chosen on validation, MLP probe."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from protein_care.evaluation.probes import (
    PC1_CHANCE_DEG,
    RIDGE_LAMBDAS,
    angles_deg,
    axis_to_target,
    fit_mlp_probe,
    fit_ridge_probe,
    principal_axes,
    rotate_axes,
    target_to_axis,
    well_defined,
)
from protein_care.geometry import random_rotations
from tests.protein_care.standins import (
    equivariant_plus_invariant_embed,
    invariant_embed,
    random_clouds,
)


def probe_data(embed, n_clouds: int, rotations_per_cloud: int, seed: int):
    """Embeddings and PC1 targets of randomly rotated clouds, plus the eigenvalues."""
    clouds = random_clouds(n_clouds, seed)
    reps = [c for c in clouds for _ in range(rotations_per_cloud)]
    r = random_rotations(len(reps), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    pcs = [principal_axes(c) for c in clouds]
    u = rotate_axes(np.repeat(np.stack([p[0] for p in pcs]), rotations_per_cloud, axis=0), r)
    ev = np.repeat(np.stack([p[1] for p in pcs]), rotations_per_cloud, axis=0)
    return embed(reps, None, rotations=r).numpy(), u, ev


@pytest.fixture(scope="module")
def equivariant_sets():
    train = probe_data(equivariant_plus_invariant_embed, 80, 12, seed=1)
    val = probe_data(equivariant_plus_invariant_embed, 30, 8, seed=2)
    test = probe_data(equivariant_plus_invariant_embed, 40, 4, seed=3)
    return train, val, test


def test_principal_axis_is_the_top_covariance_eigenvector_and_rotates_with_the_cloud():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3)) * np.array([5.0, 1.0, 0.5])
    u, ev = principal_axes(x)
    assert abs(u[0]) > 0.99 and ev[0] > ev[1] > ev[2]
    r = random_rotations(1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    u_rot, _ = principal_axes(x @ r[0].numpy().T)
    assert angles_deg(u_rot[None], rotate_axes(u[None], r))[0] < 1e-4
    assert well_defined(ev) and not well_defined(np.array([1.0, 0.95, 0.1]))
    assert not well_defined(principal_axes(np.ones((50, 3)))[1])  # one point 50 times: no axis at all


def test_target_round_trip_and_sign_invariance():
    u = np.random.default_rng(1).normal(size=(50, 3))
    y = axis_to_target(u)
    assert y.shape == (50, 5)
    np.testing.assert_allclose(axis_to_target(-u), y, atol=1e-12)
    assert angles_deg(target_to_axis(y), u).max() < 1e-5


def test_probe_is_sign_invariant_flipping_target_signs_gives_the_same_probe(equivariant_sets):
    (e, u, _), (ev_, uv, _), (et, ut, _) = equivariant_sets
    flips = np.where(np.random.default_rng(0).random(len(u)) < 0.5, -1.0, 1.0)[:, None]
    flips_v = np.where(np.random.default_rng(1).random(len(uv)) < 0.5, -1.0, 1.0)[:, None]
    a = fit_ridge_probe(e, u, ev_, uv)
    b = fit_ridge_probe(e, u * flips, ev_, uv * flips_v)
    assert a.lam == b.lam
    np.testing.assert_allclose(a.weights, b.weights, atol=1e-10)
    m1 = fit_mlp_probe(e, u, ev_, uv, max_epochs=3, seed=0)
    m2 = fit_mlp_probe(e, u * flips, ev_, uv * flips_v, max_epochs=3, seed=0)
    np.testing.assert_allclose(m1.predict_axes(et), m2.predict_axes(et), atol=1e-6)


def test_probe_recovers_pc1_nearly_exactly_for_an_equivariant_embedding(equivariant_sets):
    (e, u, _), (ev_, uv, _), (et, ut, evt) = equivariant_sets
    angles = angles_deg(fit_ridge_probe(e, u, ev_, uv).predict_axes(et), ut)
    mask = well_defined(evt)
    assert angles[mask].mean() < 2.0, angles[mask].mean()
    assert np.median(angles) < 2.0
    mlp_angles = angles_deg(fit_mlp_probe(e, u, ev_, uv, seed=0).predict_axes(et), ut)
    assert mlp_angles[mask].mean() < 6.0, mlp_angles[mask].mean()


def test_probe_is_near_chance_for_an_invariant_embedding():
    train = probe_data(invariant_embed, 80, 8, seed=1)
    val = probe_data(invariant_embed, 30, 8, seed=2)
    et, ut, _ = probe_data(invariant_embed, 60, 8, seed=3)
    angles = angles_deg(fit_ridge_probe(*train[:2], *val[:2]).predict_axes(et), ut)
    assert abs(angles.mean() - PC1_CHANCE_DEG) < 5.0, angles.mean()


def test_ridge_lambda_is_chosen_on_validation_from_a_grid_reaching_1e_minus_12():
    assert min(RIDGE_LAMBDAS) == 1e-12 and max(RIDGE_LAMBDAS) >= 1e3
    # the equivariant signal lives in directions 1e-5 as large as the invariant ones:
    # only a tiny penalty recovers it (a 1e-6 floor overstated the angle in a prototype)
    embed = functools.partial(equivariant_plus_invariant_embed, scale=1e-5)
    train, val = probe_data(embed, 80, 12, seed=1), probe_data(embed, 30, 8, seed=2)
    et, ut, _ = probe_data(embed, 40, 4, seed=3)
    probe = fit_ridge_probe(*train[:2], *val[:2])
    assert probe.lambdas == RIDGE_LAMBDAS
    assert probe.lam == probe.lambdas[int(np.argmin(probe.val_angle_deg))]
    assert probe.lam <= 1e-8
    fine = angles_deg(probe.predict_axes(et), ut).mean()
    floored = fit_ridge_probe(*train[:2], *val[:2], lambdas=tuple(v for v in RIDGE_LAMBDAS if v >= 1e-6))
    coarse = angles_deg(floored.predict_axes(et), ut).mean()
    assert fine < 3.0 and coarse > fine + 10.0, (fine, coarse)


def test_ridge_prefers_the_larger_penalty_on_ties():
    e = np.random.default_rng(0).normal(size=(40, 4))
    u = np.tile([[1.0, 0.0, 0.0]], (40, 1))  # a constant target: every λ predicts it exactly
    probe = fit_ridge_probe(e[:30], u[:30], e[30:], u[30:])
    assert probe.lam == max(RIDGE_LAMBDAS)


def test_mlp_probe_is_deterministic_given_the_seed(equivariant_sets):
    (e, u, _), (ev_, uv, _), (et, _, _) = equivariant_sets
    state = torch.random.get_rng_state()
    a = fit_mlp_probe(e, u, ev_, uv, max_epochs=4, seed=3).predict_axes(et)
    b = fit_mlp_probe(e, u, ev_, uv, max_epochs=4, seed=3).predict_axes(et)
    np.testing.assert_array_equal(a, b)
    assert torch.equal(state, torch.random.get_rng_state())


def test_mlp_probe_starts_at_the_ridge_probe_and_is_never_worse_on_validation():
    # few training embeddings of many distinct clouds: an MLP alone memorises them
    train = probe_data(equivariant_plus_invariant_embed, 40, 2, seed=4)
    val = probe_data(equivariant_plus_invariant_embed, 30, 2, seed=5)
    (e, u, _), (ev_, uv, _) = train, val
    ridge = fit_ridge_probe(e, u, ev_, uv)
    ridge_val = float(angles_deg(ridge.predict_axes(ev_), uv).mean())
    mlp = fit_mlp_probe(e, u, ev_, uv, seed=0, ridge=ridge, max_epochs=20)
    assert mlp.history[0] == pytest.approx(ridge_val, abs=1e-3)  # epoch 0 is the ridge map itself
    assert mlp.val_angle_deg <= ridge_val + 1e-3
