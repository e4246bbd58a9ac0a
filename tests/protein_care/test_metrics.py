"""γ_f, geodesic angles, composition error, sign-invariant axis angles."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from protein_care.geometry import axis_rotation, random_orthogonal, random_rotations, solve_wahba
from protein_care.metrics import axis_angle, composition_error, geodesic_angle, relative_equivariance


def test_relative_equivariance_is_zero_for_an_exactly_equivariant_map():
    g = torch.Generator().manual_seed(0)
    fx = F.normalize(torch.randn(32, 16, generator=g, dtype=torch.float64), dim=1)
    Q = random_orthogonal(1, 16, generator=g, dtype=torch.float64)[0]
    result = relative_equivariance(fx, fx @ Q.T)
    assert result.value < 1e-20
    assert result.n_pairs == 32 * 31 and result.n_skipped == 0


def test_relative_equivariance_is_large_for_invariant_plus_noise():
    g = torch.Generator().manual_seed(1)
    fx = F.normalize(torch.randn(32, 16, generator=g, dtype=torch.float64), dim=1)
    fxa = F.normalize(fx + 1e-3 * torch.randn(32, 16, generator=g, dtype=torch.float64), dim=1)
    assert relative_equivariance(fx, fxa).value > 1.0


def test_relative_equivariance_matches_pairwise_definition_and_skips_unmoved_pairs():
    g = torch.Generator().manual_seed(2)
    fx = torch.randn(6, 3, generator=g, dtype=torch.float64)
    fxa = torch.randn(6, 3, generator=g, dtype=torch.float64)
    fxa[0], fxa[1] = fx[0], fx[1]  # samples 0 and 1 do not move: pair (0, 1) undefined
    ratios = []
    for i in range(6):
        for j in range(6):
            if i == j or {i, j} == {0, 1}:
                continue
            num = ((fxa[j] - fxa[i]).pow(2).sum() - (fx[j] - fx[i]).pow(2).sum()) ** 2
            den = ((fxa[j] - fx[j]).pow(2).sum() + (fxa[i] - fx[i]).pow(2).sum()) ** 2
            ratios.append(num / den)
    result = relative_equivariance(fx, fxa)
    assert result.n_skipped == 2
    assert math.isclose(result.value, float(torch.stack(ratios).mean()), rel_tol=1e-12)


@settings(max_examples=40, deadline=None)
@given(theta=st.floats(0.0, math.pi), axis=st.sampled_from(["x", "y", "z"]))
def test_geodesic_angle_of_axis_rotation_is_theta(theta, axis):
    R = axis_rotation(axis, torch.tensor([theta], dtype=torch.float64))
    assert math.isclose(float(geodesic_angle(torch.eye(3, dtype=torch.float64)[None], R)[0]), theta, abs_tol=1e-7)


def test_geodesic_angle_is_a_batched_bi_invariant_distance():
    g = torch.Generator().manual_seed(3)
    A, B, C = (random_rotations(50, generator=g, dtype=torch.float64) for _ in range(3))
    assert torch.allclose(geodesic_angle(C @ A, C @ B), geodesic_angle(A, B), atol=1e-9)
    assert torch.allclose(geodesic_angle(A, B), geodesic_angle(B, A), atol=1e-9)
    small = axis_rotation("y", torch.tensor([1e-6], dtype=torch.float64))
    assert math.isclose(float(geodesic_angle(torch.eye(3, dtype=torch.float64)[None], small)[0]), 1e-6, rel_tol=1e-6)


def test_geodesic_angle_general_dimension_matches_planes_of_rotation():
    # block rotation by 0.3 in one plane and 0.4 in another: distance sqrt(0.3² + 0.4²) = 0.5
    R = torch.eye(5, dtype=torch.float64)
    for (i, j), t in (((0, 1), 0.3), ((2, 3), 0.4)):
        R[i, i], R[i, j], R[j, i], R[j, j] = math.cos(t), -math.sin(t), math.sin(t), math.cos(t)
    assert math.isclose(float(geodesic_angle(torch.eye(5, dtype=torch.float64), R)), 0.5, rel_tol=1e-9)
    R2 = R[:2, :2]
    assert math.isclose(float(geodesic_angle(torch.eye(2, dtype=torch.float64), R2)), 0.3, rel_tol=1e-9)


def test_composition_error_zero_for_a_representation_and_positive_otherwise():
    g = torch.Generator().manual_seed(4)
    Ra, Rb = random_orthogonal(2, 8, generator=g, dtype=torch.float64)
    assert composition_error(Ra, Rb, Rb @ Ra) < 1e-12
    assert composition_error(Ra, Rb, Ra @ Rb) > 0.1
    # recovered with solve_wahba from an exactly equivariant linear embedding
    F0 = torch.randn(64, 8, generator=g, dtype=torch.float64)
    Ra_hat, Rb_hat = solve_wahba(F0, F0 @ Ra.T), solve_wahba(F0, F0 @ Rb.T)
    Rab_hat = solve_wahba(F0, F0 @ (Rb @ Ra).T)
    assert composition_error(Ra_hat, Rb_hat, Rab_hat) < 1e-9


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), sign=st.sampled_from([-1.0, 1.0]), scale=st.floats(0.1, 10))
def test_axis_angle_is_sign_and_scale_invariant(seed, sign, scale):
    g = torch.Generator().manual_seed(seed)
    u, v = torch.randn(2, 3, generator=g, dtype=torch.float64)
    assert torch.allclose(axis_angle(u, v), axis_angle(sign * scale * u, v))
    assert 0 <= float(axis_angle(u, v)) <= 90


def test_axis_angle_chance_level_is_one_radian():
    g = torch.Generator().manual_seed(5)
    u = torch.randn(200_000, 3, generator=g, dtype=torch.float64)
    mean = axis_angle(u, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)).mean()
    assert math.isclose(float(mean), math.degrees(1.0), abs_tol=0.2)


def test_relative_equivariance_rejects_bad_shapes():
    with pytest.raises(ValueError):
        relative_equivariance(torch.zeros(3, 2), torch.zeros(4, 2))
