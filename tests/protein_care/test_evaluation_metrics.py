"""Wahba, γ_f, composition and retrieval on stand-in encoders of known symmetry, and
the metric dictionary of :func:`evaluate_embedder`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from protein_care.evaluation import METRIC_KEYS, PC1_CHANCE_DEG, evaluate_embedder
from protein_care.evaluation.equivariance import composition_errors, wahba_metrics
from protein_care.evaluation.retrieval import retrieval_chance, retrieval_top1
from protein_care.geometry import random_rotations
from tests.protein_care.standins import (
    constant_embed,
    equivariant_embed,
    invariant_embed,
    nonequivariant_embed,
    random_clouds,
)

CLOUDS = random_clouds(40, seed=0)
PROBE_CLOUDS = random_clouds(60, seed=1)

SPEC_KEYS = {
    "pc1_angle_deg_mean", "pc1_angle_deg_median", "pc1_mlp_angle_deg_mean", "pc1_mlp_angle_deg_median",
    "pc1_well_defined_angle_deg_mean", "pc1_chance_deg", "pc1_ridge_lambda",
    "wahba_error_mean", "wahba_error_max", "wahba_relative_mean", "embedding_displacement_mean",
    "gamma_f_mean", "composition_error_mean", "retrieval_top1", "retrieval_chance",
}


def shared_rotation_embeddings(embed, k: int = 8, seed: int = 0):
    n = len(CLOUDS)
    rots = random_rotations(k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    F = embed(CLOUDS, None)
    Fa = torch.stack([embed(CLOUDS, None, rotations=r.expand(n, 3, 3)) for r in rots])
    return rots, F, Fa


def test_wahba_relative_error_is_zero_for_an_equivariant_encoder():
    _, F, Fa = shared_rotation_embeddings(equivariant_embed)
    w = wahba_metrics(F, Fa)
    assert w.error.max() < 1e-6
    assert w.relative.max() < 1e-6 and w.displacement.min() > 0.1
    assert np.nanmax(w.gamma) < 1e-8


def test_an_invariant_encoder_does_not_move_and_its_relative_error_is_undefined():
    _, F, Fa = shared_rotation_embeddings(invariant_embed)
    summary = wahba_metrics(F, Fa).summary()
    assert summary["wahba_error_mean"] < 1e-6  # W_f ≈ 0 for free …
    assert summary["embedding_displacement_mean"] < 1e-6  # … because nothing moved
    assert summary["wahba_relative_mean"] is None and summary["gamma_f_mean"] is None


def test_a_non_equivariant_encoder_has_a_large_relative_wahba_error():
    _, F, Fa = shared_rotation_embeddings(nonequivariant_embed)
    w = wahba_metrics(F, Fa)
    assert w.displacement.mean() > 1e-3
    assert w.relative.mean() > 0.3
    assert np.nanmean(w.gamma) > 0.05


def test_composition_error_is_small_for_an_equivariant_encoder():
    rots, F, Fa = shared_rotation_embeddings(equivariant_embed, k=4)
    n = len(CLOUDS)
    Fb = torch.roll(Fa, -1, dims=0)
    rb = torch.roll(rots, -1, dims=0)
    Fba = torch.stack([equivariant_embed(CLOUDS, None, rotations=(b @ a).expand(n, 3, 3)) for a, b in zip(rots, rb)])
    assert composition_errors(F, Fa, Fb, Fba).max() < 1e-6
    shuffled = Fba[torch.tensor([1, 2, 3, 0])]  # wrong pairing: not a product
    assert composition_errors(F, Fa, Fb, shuffled).min() > 0.1


def test_composition_is_undefined_when_the_set_does_not_span_the_embedding_space():
    # an exactly equivariant map F(x R^T) = F(x) Q_R^T in d = 16 with Q = blockdiag(R, ..., R)
    gen = torch.Generator().manual_seed(0)
    a, b = random_rotations(2, generator=gen, dtype=torch.float64)
    def blocks(r):
        return torch.block_diag(*[r] * 5, torch.eye(1, dtype=torch.float64))
    def embed(n):
        F = torch.randn(n, 16, generator=gen, dtype=torch.float64)
        return F, (F @ blocks(a).T)[None], (F @ blocks(b).T)[None], (F @ (blocks(b) @ blocks(a)).T)[None]
    assert composition_errors(*embed(40)).max() < 1e-8  # n >= d: every R is determined
    assert np.isnan(composition_errors(*embed(10))).all()  # n < d: R is free outside span(F)


def test_composition_is_undefined_for_a_float32_set_of_lower_rank_than_its_dimension():
    """float32 rounding spreads a rank-6 set over all 12 dimensions at ~1e-7: that is
    not a span that determines R (it gave errors near 1 for an exact representation)."""
    gen = torch.Generator().manual_seed(1)
    a, b = random_rotations(2, generator=gen, dtype=torch.float64)
    basis, _ = torch.linalg.qr(torch.randn(12, 6, generator=gen, dtype=torch.float64))  # a 6-dim subspace
    def blocks(r):
        return torch.block_diag(r, r)
    F6 = torch.randn(200, 6, generator=gen, dtype=torch.float64)
    def embed(q):  # exactly equivariant inside the subspace, rounded to float32 as embed_clouds returns
        return ((F6 @ q.T) @ basis.T).float()
    F, Fa, Fb, Fba = embed(torch.eye(6, dtype=torch.float64)), embed(blocks(a)), embed(blocks(b)), embed(blocks(b @ a))
    assert int(torch.linalg.matrix_rank(F.double())) == 12  # float64's tolerance sees full rank
    assert np.isnan(composition_errors(F, Fa[None], Fb[None], Fba[None])).all()
    full = torch.randn(200, 12, generator=gen).float()  # a float32 set that does span R^12 stays measured
    assert composition_errors(full, full[None], full[None], full[None]).max() < 1e-6


def test_retrieval_is_perfect_for_an_invariant_injective_encoder_and_chance_for_a_constant_one():
    g = torch.Generator().manual_seed(0)
    n = len(CLOUDS)
    r1, r2 = random_rotations(n, generator=g), random_rotations(n, generator=g)
    assert retrieval_top1(invariant_embed(CLOUDS, None, rotations=r1), invariant_embed(CLOUDS, None, rotations=r2)) == 1.0
    const = retrieval_top1(constant_embed(CLOUDS, None, rotations=r1), constant_embed(CLOUDS, None, rotations=r2))
    assert const == pytest.approx(retrieval_chance(n)) and retrieval_chance(n) == 1 / n


@pytest.fixture(scope="module")
def results():
    out = {}
    for name, embed in [("equivariant", equivariant_embed), ("invariant", invariant_embed), ("constant", constant_embed)]:
        out[name] = evaluate_embedder(
            embed, CLOUDS, None, probe_coords=PROBE_CLOUDS, probe_features=None, seed=0, n_rotations=20,
            probe_rotations=8, mlp_probe=name == "equivariant",
        )[0]
    return out


def test_metric_keys_are_named_exactly_as_specified_and_json_serialisable(results):
    for metrics in results.values():
        assert SPEC_KEYS <= set(metrics) and set(METRIC_KEYS) <= set(metrics)
        assert list(metrics)[: len(METRIC_KEYS)] == list(METRIC_KEYS)
        json.dumps(metrics, allow_nan=False)  # raises on NaN/inf
    assert results["constant"]["pc1_chance_deg"] == pytest.approx(PC1_CHANCE_DEG) == pytest.approx(57.2958, abs=1e-3)


def test_evaluate_embedder_separates_equivariance_from_invariance(results):
    eq, inv, const = results["equivariant"], results["invariant"], results["constant"]
    assert eq["wahba_relative_mean"] < 1e-6 and eq["gamma_f_mean"] < 1e-8 and eq["composition_error_mean"] < 1e-6
    assert eq["embedding_displacement_mean"] > 0.1 and inv["embedding_displacement_mean"] < 1e-6
    assert eq["pc1_angle_deg_median"] < 2.0 and eq["pc1_well_defined_angle_deg_mean"] < 2.0
    assert eq["pc1_mlp_angle_deg_median"] < 5.0
    assert abs(inv["pc1_angle_deg_mean"] - PC1_CHANCE_DEG) < 8.0
    assert inv["retrieval_top1"] == 1.0 and const["retrieval_top1"] == pytest.approx(const["retrieval_chance"])
    assert inv["pc1_mlp_angle_deg_mean"] is None  # MLP probe switched off
    assert eq["retrieval_chance"] == 1 / len(CLOUDS)


def test_evaluate_embedder_is_deterministic_given_the_seed():
    kwargs = dict(probe_coords=PROBE_CLOUDS[:20], probe_features=None, n_rotations=3, probe_rotations=2, mlp_probe=True)
    a, _ = evaluate_embedder(nonequivariant_embed, CLOUDS[:10], None, seed=5, **kwargs)
    b, _ = evaluate_embedder(nonequivariant_embed, CLOUDS[:10], None, seed=5, **kwargs)
    c, _ = evaluate_embedder(nonequivariant_embed, CLOUDS[:10], None, seed=6, **kwargs)
    assert a == b and a != c


def test_evaluate_embedder_rejects_too_few_clouds():
    with pytest.raises(ValueError, match="at least 2 clouds"):
        evaluate_embedder(equivariant_embed, CLOUDS[:1], None, probe_coords=PROBE_CLOUDS, probe_features=None)
    with pytest.raises(ValueError, match="n_rotations"):
        evaluate_embedder(equivariant_embed, CLOUDS, None, probe_coords=PROBE_CLOUDS, probe_features=None, n_rotations=0)
