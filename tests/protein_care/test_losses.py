"""The loss core as a specification: one test per stated property."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from protein_care import losses
from protein_care.geometry import random_orthogonal
from protein_care.losses import (
    LOSS_VARIANTS,
    CombinedLoss,
    EquivarianceLoss,
    InfoNCELoss,
    care_loss,
    combined_loss,
    equivariance_loss,
    info_nce,
    info_nce_queue,
    minkowski_form,
    symplectic_form,
)


def unit_rows(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)


def info_nce_by_cross_entropy(z1, z2, tau):
    """Independent reference: 2n-way classification with the self-similarity removed."""
    n = z1.shape[0]
    z = torch.cat([z1, z2])
    sim = z @ z.T / tau
    sim.fill_diagonal_(-float("inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


# ----------------------------------------------------------------------------- InfoNCE


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 24), d=st.integers(2, 32), tau=st.floats(0.05, 2.0), seed=st.integers(0, 10_000))
def test_info_nce_equals_cross_entropy_reference(n, d, tau, seed):
    z1, z2 = unit_rows(n, d, seed), unit_rows(n, d, seed + 1)
    assert torch.allclose(info_nce(z1, z2, tau), info_nce_by_cross_entropy(z1, z2, tau), atol=1e-10)


def test_info_nce_refuses_one_pair_which_has_no_negatives():
    z1, z2 = unit_rows(1, 8, 0), unit_rows(1, 8, 1)
    with pytest.raises(ValueError, match="info_nce needs at least 2 pairs"):
        info_nce(z1, z2)
    with pytest.raises(ValueError, match="info_nce needs at least 2 pairs"):
        losses.combined_loss("unif", z1, z2, temperature=0.5)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 24), d=st.integers(2, 32), tau=st.floats(0.05, 2.0), seed=st.integers(0, 10_000))
def test_info_nce_parts_are_the_releases_alignment_and_negatives_only_uniformity(n, d, tau, seed):
    z1, z2 = unit_rows(n, d, seed), unit_rows(n, d, seed + 1)
    parts = info_nce(z1, z2, tau, return_parts=True)
    expected_alignment = -(z1 * z2).sum(1).mean() / tau
    assert torch.allclose(parts["alignment"], expected_alignment, atol=1e-12)
    z = torch.cat([z1, z2])
    similarity = torch.exp(z @ z.T / tau)
    negatives = ~(torch.eye(2 * n, dtype=torch.bool) | torch.eye(2 * n, dtype=torch.bool).roll(n, dims=1))
    expected_uniformity = similarity[negatives].view(2 * n, 2 * n - 2).sum(1).log().mean()
    assert torch.allclose(parts["uniformity"], expected_uniformity, atol=1e-10)
    # the loss's denominators also hold the positive: loss = alignment + mean log(pos + Σ neg)
    positives = similarity[torch.eye(2 * n, dtype=torch.bool).roll(n, dims=1)]
    denominators = positives + similarity[negatives].view(2 * n, 2 * n - 2).sum(1)
    assert torch.allclose(parts["loss"], expected_alignment + denominators.log().mean(), atol=1e-10)
    assert parts["loss"] > parts["alignment"] + parts["uniformity"]


def test_the_uniformity_ablation_does_not_reward_pushing_the_positive_away():
    # L_unif (negatives only) does not see the positive: the same batch with the partner
    # views anti-aligned scores the same, where a denominator with the positive rewarded it
    z1 = unit_rows(16, 8, 0)
    others = unit_rows(16, 8, 1)
    aligned = info_nce(z1, z1.clone(), 0.5, return_parts=True)["uniformity"]
    opposite = info_nce(z1, -z1, 0.5, return_parts=True)["uniformity"]
    assert torch.isfinite(aligned) and torch.isfinite(opposite)
    shuffled = info_nce(z1, others, 0.5, return_parts=True)["uniformity"]
    assert torch.isfinite(shuffled)
    assert not opposite < aligned - 1e-6  # anti-aligned partners earn nothing


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 24), seed=st.integers(0, 10_000))
def test_info_nce_invariant_to_permuting_pairs(n, seed):
    z1, z2 = unit_rows(n, 8, seed), unit_rows(n, 8, seed + 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    assert torch.allclose(info_nce(z1, z2), info_nce(z1[perm], z2[perm]), atol=1e-12)


def test_info_nce_finite_at_small_temperature_in_float32_and_bf16():
    z1 = unit_rows(64, 16, 0).float()
    z2 = unit_rows(64, 16, 1).float()
    for tau in (0.01, 0.02):
        assert torch.isfinite(info_nce(z1, z2, tau))
        assert torch.isfinite(info_nce(z1.bfloat16(), z2.bfloat16(), tau))
    assert info_nce(z1.bfloat16(), z2.bfloat16()).dtype == torch.float32


def test_info_nce_rewards_matching_pairs():
    z = unit_rows(32, 16, 3)
    assert info_nce(z, z) < info_nce(z, unit_rows(32, 16, 4))


def test_info_nce_queue_equals_reference():
    q, k, queue = unit_rows(8, 16, 0), unit_rows(8, 16, 1), unit_rows(32, 16, 2)
    tau = 0.2
    expected = torch.stack([
        -torch.log(torch.exp(q[i] @ k[i] / tau) / (torch.exp(q[i] @ k[i] / tau) + torch.exp(queue @ q[i] / tau).sum()))
        for i in range(8)
    ]).mean()
    assert torch.allclose(info_nce_queue(q, k, queue, tau), expected, atol=1e-10)


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan")])
def test_bad_temperature_raises_value_error_naming_it(tau):
    z = unit_rows(4, 3, 0)
    with pytest.raises(ValueError, match="temperature"):
        info_nce(z, z, tau)
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(tau)


def test_mismatched_shapes_raise_value_error():
    with pytest.raises(ValueError, match="same shape"):
        info_nce(unit_rows(4, 3, 0), unit_rows(5, 3, 0))


# ----------------------------------------------------------------------------- equivariance


def per_chunk_rotated(z1, n_split, seed, special=True):
    n, d = z1.shape
    qs = random_orthogonal(n_split, d, special=special, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    chunks = z1.reshape(n_split, n // n_split, d)
    return (chunks @ qs.transpose(1, 2)).reshape(n, d)


@settings(max_examples=40, deadline=None)
@given(
    n_split=st.integers(1, 6), chunk=st.integers(2, 10), d=st.integers(2, 24),
    seed=st.integers(0, 10_000), normalization=st.sampled_from(["release", "pair_mean"]),
    special=st.booleans(),
)
def test_equivariance_loss_is_zero_for_an_orthogonal_map_per_chunk(n_split, chunk, d, seed, normalization, special):
    z1 = unit_rows(n_split * chunk, d, seed)
    z2 = per_chunk_rotated(z1, n_split, seed + 1, special=special)
    assert equivariance_loss(z1, z2, n_split, normalization) < 1e-20


@settings(max_examples=30, deadline=None)
@given(n_split=st.integers(1, 4), chunk=st.integers(3, 10), d=st.integers(3, 16), seed=st.integers(0, 10_000))
def test_equivariance_loss_is_positive_for_a_non_orthogonal_linear_map(n_split, chunk, d, seed):
    z1 = unit_rows(n_split * chunk, d, seed)
    g = torch.Generator().manual_seed(seed)
    stretch = torch.linalg.matrix_exp(torch.diag(torch.linspace(-0.7, 0.7, d, dtype=torch.float64)))
    mix = random_orthogonal(1, d, generator=g, dtype=torch.float64)[0]
    z2 = z1 @ (mix @ stretch @ mix.T).T  # symmetric positive map with singular values e^-0.7 .. e^0.7
    assert equivariance_loss(z1, z2, n_split) > 1e-3


def test_one_orthogonal_map_per_chunk_is_not_enough_across_chunks():
    """The loss only asks for one map per chunk: different maps in different chunks
    still give 0, while a per-sample map inside a chunk does not."""
    z1 = unit_rows(12, 6, 0)
    assert equivariance_loss(z1, per_chunk_rotated(z1, 3, 1), 3) < 1e-20
    per_sample = per_chunk_rotated(z1, 6, 2)  # a new map every 2 rows
    assert equivariance_loss(z1, per_sample, 3) > 1e-3


def lorentz_boost(d, rapidity):
    boost = torch.eye(d, dtype=torch.float64)
    c, s = math.cosh(rapidity), math.sinh(rapidity)
    boost[0, 0], boost[0, 1], boost[1, 0], boost[1, 1] = c, s, s, c
    return boost


@settings(max_examples=25, deadline=None)
@given(d=st.integers(2, 12), rapidity=st.floats(-2.0, 2.0), seed=st.integers(0, 10_000))
def test_minkowski_form_loss_vanishes_for_lorentz_boost(d, rapidity, seed):
    z1 = torch.randn(8, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    z2 = z1 @ lorentz_boost(d, rapidity).T
    eta = minkowski_form(d, dtype=torch.float64)
    assert equivariance_loss(z1, z2, 2, "pair_mean", form=eta) < 1e-18


def test_minkowski_form_loss_positive_for_rotation_mixing_time_axis():
    d = 4
    z1 = torch.randn(8, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    theta = 0.7
    rotation = torch.eye(d, dtype=torch.float64)
    rotation[0, 0], rotation[0, 1], rotation[1, 0], rotation[1, 1] = math.cos(theta), -math.sin(theta), math.sin(theta), math.cos(theta)
    z2 = z1 @ rotation.T
    eta = minkowski_form(d, dtype=torch.float64)
    assert equivariance_loss(z1, z2, 2, form=eta) > 1e-2
    assert equivariance_loss(z1, z2, 2) < 1e-20  # but it is orthogonal


@settings(max_examples=25, deadline=None)
@given(half=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_symplectic_form_loss_vanishes_for_symplectic_map(half, seed):
    d = 2 * half
    g = torch.Generator().manual_seed(seed)
    sym = torch.randn(half, half, generator=g, dtype=torch.float64)
    sym = sym + sym.T
    eye, zero = torch.eye(half, dtype=torch.float64), torch.zeros(half, half, dtype=torch.float64)
    shear = torch.cat([torch.cat([eye, sym], 1), torch.cat([zero, eye], 1)], 0)  # [[I, S], [0, I]], S = Sᵀ
    a = torch.linalg.matrix_exp(0.3 * torch.randn(half, half, generator=g, dtype=torch.float64))
    block = torch.block_diag(a, torch.linalg.inv(a).T)  # diag(A, A^{-T})
    symplectic = shear @ block
    omega = symplectic_form(d, dtype=torch.float64)
    assert torch.allclose(symplectic.T @ omega @ symplectic, omega, atol=1e-9)
    z1 = torch.randn(6, d, generator=g, dtype=torch.float64)
    z2 = z1 @ symplectic.T
    assert equivariance_loss(z1, z2, 3, "pair_mean", form=omega) < 1e-14
    assert equivariance_loss(z1, z1 * 1.5, 3, "pair_mean", form=omega) > 1e-3  # a scaling is not symplectic


def test_both_normalizations_on_a_hand_computed_two_chunk_example():
    # chunk 0: rows e1, e2 vs e1, (e1+e2)/√2 → G differs only at (0,1),(1,0) by -1/√2
    # chunk 1: rows e1, e1 vs e1, e2 → G differs at (0,1),(1,0) by 1
    s = 1 / math.sqrt(2)
    z1 = torch.tensor([[1.0, 0], [0, 1], [1, 0], [1, 0]], dtype=torch.float64)
    z2 = torch.tensor([[1.0, 0], [s, s], [1, 0], [0, 1]], dtype=torch.float64)
    # E sums: chunk 0: 2 * 0.5 = 1.0; chunk 1: 2 * 1 = 2.0; chunk size 2
    release = (2 * 1.0 / 2 + 2 * 2.0 / 2) / 2  # 2 * mean_i Σ_j, then mean over chunks = 1.5
    pair_mean = (1.0 / 2 + 2.0 / 2) / 2  # mean over 2 off-diagonal pairs = 0.75
    assert equivariance_loss(z1, z2, 2, "release").item() == pytest.approx(release)
    assert equivariance_loss(z1, z2, 2, "pair_mean").item() == pytest.approx(pair_mean)


def test_release_normalization_grows_with_chunk_size_and_pair_mean_does_not():
    z1, z2 = unit_rows(64, 8, 0), unit_rows(64, 8, 1)
    r_small, r_big = equivariance_loss(z1, z2, 16), equivariance_loss(z1, z2, 2)
    p_small, p_big = equivariance_loss(z1, z2, 16, "pair_mean"), equivariance_loss(z1, z2, 2, "pair_mean")
    assert r_big > 4 * r_small
    assert 0.5 < p_big / p_small < 2


def test_vectorised_loss_matches_python_loop_over_chunks():
    z1, z2 = unit_rows(48, 16, 0), unit_rows(48, 16, 1)
    expected = []
    for a, b in zip(z1.split(8), z2.split(8)):
        e = (a @ a.T - b @ b.T).pow(2)
        e.fill_diagonal_(0)
        expected.append(2 * e.sum(1).mean())
    assert torch.allclose(equivariance_loss(z1, z2, 6), torch.stack(expected).mean())


@pytest.mark.parametrize(
    "n, n_split, match",
    [(10, 3, "divide"), (10, 0, "n_split"), (4, 4, "chunk size 1"), (8, 2.0, "n_split")],
)
def test_equivariance_loss_bad_arguments_name_them(n, n_split, match):
    z = unit_rows(n, 4, 0)
    with pytest.raises(ValueError, match=match):
        equivariance_loss(z, z, n_split)


def test_equivariance_loss_bad_normalization_and_shapes():
    z = unit_rows(8, 4, 0)
    with pytest.raises(ValueError, match="normalization"):
        equivariance_loss(z, z, 2, "mean")
    with pytest.raises(ValueError, match="same shape"):
        equivariance_loss(z, unit_rows(8, 5, 0), 2)
    with pytest.raises(ValueError, match="form"):
        equivariance_loss(z, z, 2, form=torch.eye(3))
    with pytest.raises(ValueError, match="even"):
        symplectic_form(5)


# ----------------------------------------------------------------------------- sums


def test_care_loss_is_info_nce_plus_lambda_times_equivariance():
    z1, z2, e1, e2 = (unit_rows(16, 8, s) for s in range(4))
    parts = care_loss(z1, z2, e1, e2, temperature=0.5, lam=0.3, n_split=4)
    expected = info_nce(z1, z2, 0.5) + 0.3 * equivariance_loss(e1, e2, 4)
    assert torch.allclose(parts["loss"], expected)
    assert set(parts) == {"loss", "info_nce", "alignment", "uniformity", "equivariance"}


@pytest.mark.parametrize(
    "name, uses",
    [
        ("care", {"info_nce", "equivariance"}),  # InfoNCE: alignment and its own denominators
        ("simclr", {"info_nce"}),
        ("inv", {"alignment"}),
        ("unif", {"uniformity"}),
        ("equi-unif", {"uniformity", "equivariance"}),
    ],
)
def test_loss_variants_sum_exactly_their_parts(name, uses):
    z1, z2, e1, e2 = (unit_rows(16, 8, s) for s in range(4))
    lam = 0.7
    out = combined_loss(name, z1, z2, e1, e2, temperature=0.5, lam=lam, n_split=2)
    expected = sum((lam if part == "equivariance" else 1.0) * out[part] for part in uses)
    assert torch.allclose(out["loss"], expected)
    assert LOSS_VARIANTS[name].needs_equivariance_views == ("equivariance" in uses)


def test_unknown_loss_name_lists_choices():
    with pytest.raises(ValueError, match="care"):
        losses.loss_variant("barlow")
    z = unit_rows(4, 3, 0)
    with pytest.raises(ValueError, match="equivariance views"):
        combined_loss("care", z, z, temperature=0.5, lam=1.0, n_split=2)


@pytest.mark.parametrize("name", sorted(LOSS_VARIANTS))
def test_gradients_are_finite_for_every_variant_and_reach_exactly_the_inputs_it_uses(name):
    g = torch.Generator().manual_seed(0)
    raw = [torch.randn(16, 8, generator=g, requires_grad=True) for _ in range(4)]
    z1, z2, e1, e2 = (F.normalize(r, dim=1) for r in raw)
    out = CombinedLoss(name, temperature=0.1, lam=0.5, n_split=4)(z1, z2, e1, e2)
    out["loss"].backward()
    equivariance = name in ("care", "equi-unif")  # the variants with an L_equi term
    assert LOSS_VARIANTS[name].equivariance is equivariance
    for label, r, used in zip(("z1", "z2", "e1", "e2"), raw, (True, True, equivariance, equivariance)):
        if used:
            assert r.grad is not None, (name, label)
            assert torch.isfinite(r.grad).all() and r.grad.abs().max() > 1e-6, (name, label)
        else:
            assert r.grad is None, (name, label)  # the equivariance views do not enter this loss


def test_modules_validate_settings_and_follow_device_moves():
    with pytest.raises(ValueError, match="n_split"):
        EquivarianceLoss(0)
    with pytest.raises(ValueError, match="lam"):
        CombinedLoss("care", lam=-1.0)
    module = EquivarianceLoss(2, form=minkowski_form(4)).to(torch.float64)
    z = unit_rows(4, 4, 0)
    assert module(z, z) == 0


def test_cli_loss_names_mirror_the_loss_table():
    from protein_care.options import LOSS_NAMES, NORMALIZATIONS as OPTION_NORMALIZATIONS

    assert tuple(LOSS_VARIANTS) == LOSS_NAMES
    assert losses.NORMALIZATIONS == OPTION_NORMALIZATIONS


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 40), d=st.integers(2, 16), seed=st.integers(0, 2**31 - 1))
def test_orbit_similarity_is_one_for_identical_views_and_the_mean_cosine_otherwise(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    z1 = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    z2 = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    assert float(losses.orbit_similarity(z1, z1)) == pytest.approx(1.0)  # an invariant encoder
    assert float(losses.orbit_similarity(z1, -z1)) == pytest.approx(-1.0)
    expected = sum(float(z1[i] @ z2[i]) for i in range(n)) / n
    assert float(losses.orbit_similarity(z1, z2)) == pytest.approx(expected)


# ----------------------------------------------------------------------------- precision


@pytest.mark.parametrize("name", sorted(LOSS_VARIANTS))
def test_every_loss_is_computed_in_float32_inside_a_bf16_autocast_region(name):
    """The image benchmarks compute their loss under bf16 autocast: without the guard the
    Gram matrices and logits ran in bf16 and λ·L_equi ≈ 0.005 vanished from a loss of ≈ 6."""
    z1, z2, e1, e2 = (unit_rows(64, 32, s).float() for s in range(4))
    queue = unit_rows(128, 32, 9).float()
    reference = combined_loss(name, z1, z2, e1, e2, temperature=0.5, lam=0.01, n_split=8)
    reference_queue = info_nce_queue(z1, z2, queue, 0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert (z1 @ z2.T).dtype == torch.bfloat16  # the region does cast matrix products
        parts = combined_loss(name, z1, z2, e1, e2, temperature=0.5, lam=0.01, n_split=8)
        queued = info_nce_queue(z1, z2, queue, 0.1)
        assert torch.is_autocast_enabled("cpu")  # and is still on for the caller afterwards
    for key, value in parts.items():
        assert value.dtype == torch.float32, key
        torch.testing.assert_close(value, reference[key], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(queued, reference_queue, rtol=1e-6, atol=1e-7)


def test_bf16_embeddings_get_a_float32_loss_and_bf16_gradients():
    raw = [unit_rows(32, 16, s).to(torch.bfloat16).requires_grad_() for s in range(4)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        parts = care_loss(*raw, temperature=0.5, lam=0.01, n_split=4)
    assert parts["loss"].dtype == torch.float32
    assert losses.orbit_similarity(raw[2], raw[3]).dtype == torch.float32
    expected = care_loss(*(r.detach().float() for r in raw), temperature=0.5, lam=0.01, n_split=4)
    torch.testing.assert_close(parts["loss"], expected["loss"])
    parts["loss"].backward()
    assert all(r.grad.dtype == torch.bfloat16 and torch.isfinite(r.grad.float()).all() for r in raw)
