"""Rotations and Wahba's problem."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protein_care.geometry import axis_rotation, random_orthogonal, random_rotations, solve_wahba, wahba_error

I3 = torch.eye(3, dtype=torch.float64)


def composed_axis_angles(n, generator):
    """A sampler that is NOT Haar: independent uniform angles about x, then y, then z."""
    angles = torch.rand(3, n, generator=generator, dtype=torch.float64) * 2 * math.pi
    return axis_rotation("z", angles[2]) @ axis_rotation("y", angles[1]) @ axis_rotation("x", angles[0])


def trace_moments(rotations):
    tr = torch.diagonal(rotations, dim1=-2, dim2=-1).sum(-1)
    return tr.mean().item(), tr.pow(2).mean().item()


def test_random_rotations_are_haar_by_trace_moments():
    # Haar on SO(3): E[tr R] = 0, E[(tr R)^2] = 1; standard error of the second moment ~ 0.01 at 20k
    rotations = random_rotations(40_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean, second = trace_moments(rotations)
    assert abs(mean) < 0.03
    assert abs(second - 1.0) < 0.05


def test_trace_moment_check_rejects_composed_axis_angles():
    mean, second = trace_moments(composed_axis_angles(40_000, torch.Generator().manual_seed(0)))
    assert abs(second - 0.875) < 0.04
    assert abs(second - 1.0) > 0.05  # the same check as above fails for this sampler


def test_random_rotations_are_proper_orthogonal():
    rotations = random_rotations(1000, generator=torch.Generator().manual_seed(1))
    assert rotations.dtype == torch.float32 and rotations.shape == (1000, 3, 3)
    assert torch.allclose(rotations.transpose(1, 2) @ rotations, torch.eye(3).expand(1000, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(1000), atol=1e-5)


def test_random_rotations_reproducible_with_generator():
    a = random_rotations(5, generator=torch.Generator().manual_seed(7))
    b = random_rotations(5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert random_rotations(0).shape == (0, 3, 3)


@settings(max_examples=50, deadline=None)
@given(q=st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda v: sum(a * a for a in v) > 1e-3),
       scale=st.floats(0.1, 10.0), sign=st.sampled_from([1.0, -1.0]))
def test_quaternion_matrix_is_the_rotation_of_the_unit_quaternion_whatever_its_scale_and_sign(q, scale, sign):
    from protein_care.geometry import _quaternion_to_matrix

    q = torch.tensor([q], dtype=torch.float64)
    unit = q / q.norm()
    w, x, y, z = unit[0].tolist()
    # Rodrigues: angle 2 acos(w) about (x, y, z)
    half_sine = math.sqrt(x * x + y * y + z * z)
    angle = torch.tensor(2 * math.atan2(half_sine, w), dtype=torch.float64)
    expected = axis_rotation(torch.tensor([x, y, z], dtype=torch.float64), angle) if half_sine > 1e-9 else I3[None]
    torch.testing.assert_close(_quaternion_to_matrix(sign * scale * q), expected, atol=1e-10, rtol=0)


@settings(max_examples=30, deadline=None)
@given(theta=st.floats(-10, 10), axis=st.sampled_from(["x", "y", "z"]))
def test_axis_rotation_turns_perpendicular_vector_by_theta(theta, axis):
    rotation = axis_rotation(axis, torch.tensor([theta], dtype=torch.float64))[0]
    u = {"x": 0, "y": 1, "z": 2}[axis]
    e = I3[(u + 1) % 3]
    turned = rotation @ e
    assert math.isclose(float(turned @ e), math.cos(theta), abs_tol=1e-12)
    assert torch.allclose(rotation @ I3[u], I3[u])  # the axis is fixed
    assert math.isclose(float(torch.linalg.det(rotation)), 1.0, abs_tol=1e-12)


def test_axis_rotation_right_hand_rule_and_custom_axis():
    rz = axis_rotation("z", torch.tensor([math.pi / 2], dtype=torch.float64))[0]
    assert torch.allclose(rz @ I3[0], I3[1], atol=1e-12)  # x → y
    custom = axis_rotation(torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64), torch.tensor([0.3], dtype=torch.float64))
    assert torch.allclose(custom, axis_rotation("z", torch.tensor([0.3], dtype=torch.float64)))
    with pytest.raises(ValueError, match="axis"):
        axis_rotation("w", 0.1)
    with pytest.raises(ValueError, match="non-zero"):
        axis_rotation((0.0, 0.0, 0.0), 0.1)


@pytest.mark.parametrize("d", [2, 3, 5, 16])
@pytest.mark.parametrize("special", [True, False])
def test_random_orthogonal_is_orthogonal_with_requested_determinant(d, special):
    q = random_orthogonal(500, d, special=special, generator=torch.Generator().manual_seed(d), dtype=torch.float64)
    assert torch.allclose(q.transpose(1, 2) @ q, torch.eye(d, dtype=torch.float64).expand(500, d, d), atol=1e-10)
    det = torch.linalg.det(q)
    if special:
        assert torch.allclose(det, torch.ones(500, dtype=torch.float64))
    else:  # Haar on O(d): both components, about half each
        assert 0.35 < (det < 0).double().mean() < 0.65


def test_random_orthogonal_so3_matches_haar_trace_moments():
    q = random_orthogonal(30_000, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    mean, second = trace_moments(q)
    assert abs(mean) < 0.04 and abs(second - 1.0) < 0.06


@pytest.mark.parametrize("d", [2, 3, 8, 128])
def test_solve_wahba_recovers_planted_rotation_from_noisy_data(d):
    g = torch.Generator().manual_seed(d)
    n = max(4 * d, 64)
    F = torch.randn(n, d, generator=g, dtype=torch.float64)
    R = random_orthogonal(1, d, generator=g, dtype=torch.float64)[0]
    Fa = F @ R.T + 0.01 * torch.randn(n, d, generator=g, dtype=torch.float64)
    estimate = solve_wahba(F, Fa)
    assert torch.linalg.matrix_norm(estimate - R) / math.sqrt(d) < 0.01
    assert math.isclose(float(torch.linalg.det(estimate)), 1.0, abs_tol=1e-9)


@pytest.mark.parametrize("d", [2, 3, 6])
def test_solve_wahba_returns_proper_rotation_when_best_fit_is_a_reflection(d):
    g = torch.Generator().manual_seed(11)
    F = torch.randn(50, d, generator=g, dtype=torch.float64)
    reflection = torch.eye(d, dtype=torch.float64)
    reflection[0, 0] = -1
    Fa = F @ reflection.T
    proper = solve_wahba(F, Fa)
    improper = solve_wahba(F, Fa, allow_reflection=True)
    assert math.isclose(float(torch.linalg.det(proper)), 1.0, abs_tol=1e-9)
    assert torch.allclose(improper, reflection, atol=1e-9)
    assert torch.linalg.matrix_norm(F @ proper.T - Fa) > 1e-3  # no rotation fits a reflection


@settings(max_examples=20, deadline=None)
@given(d=st.integers(2, 16), n=st.integers(2, 40), seed=st.integers(0, 10_000))
def test_wahba_error_is_zero_for_exactly_rotated_data(d, n, seed):
    g = torch.Generator().manual_seed(seed)
    F = torch.randn(n, d, generator=g, dtype=torch.float64)
    R = random_orthogonal(1, d, generator=g, dtype=torch.float64)[0]
    assert wahba_error(F, F @ R.T) < 1e-9


def test_wahba_error_is_batched_normalised_and_not_squared():
    g = torch.Generator().manual_seed(0)
    F = torch.randn(3, 10, 4, generator=g, dtype=torch.float64)
    Fa = torch.randn(3, 10, 4, generator=g, dtype=torch.float64)
    errors = wahba_error(F, Fa)
    assert errors.shape == (3,)
    for b in range(3):
        R = solve_wahba(F[b], Fa[b])
        assert math.isclose(float(errors[b]), float(torch.linalg.matrix_norm(F[b] @ R.T - Fa[b])), rel_tol=1e-9)
    assert torch.allclose(wahba_error(F, Fa, normalized=True), errors / math.sqrt(10))
    # the optimum beats random rotations
    for R in random_orthogonal(20, 4, generator=g, dtype=torch.float64):
        assert torch.linalg.matrix_norm(F[0] @ R.T - Fa[0]) >= errors[0] - 1e-9


def test_solve_wahba_float32_input_keeps_dtype_and_rejects_bad_shapes():
    F = torch.randn(20, 3)
    assert solve_wahba(F, F).dtype == torch.float32
    with pytest.raises(ValueError, match="same shape"):
        solve_wahba(F, F[:, :2])
    with pytest.raises(ValueError, match="d must be"):
        solve_wahba(F[:, :1], F[:, :1])


def test_wahba_error_without_a_compute_dtype_keeps_float64_inputs_in_float64():
    g = torch.Generator().manual_seed(3)
    F = torch.randn(100, 16, generator=g, dtype=torch.float64)
    q = random_orthogonal(1, 16, generator=g, dtype=torch.float64)[0]
    assert float(wahba_error(F, F @ q.T, compute_dtype=None)) < 1e-10  # float32 residual: ~4e-6
