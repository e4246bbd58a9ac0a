"""Trajectories: shapes, closed regular loops for an equivariant encoder, projection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from protein_care.trajectories import (
    Trajectories,
    compute_trajectories,
    loop_regularity,
    project_trajectories,
    regularity_summary,
    rotation_series,
    sample_ids,
)
from tests.protein_care.standins import MomentEncoder, nonequivariant_embed, random_clouds

CLOUDS = random_clouds(3, seed=4)
IDS = ["P1", "P2", "P3"]


@pytest.fixture(scope="module")
def equivariant_traj() -> Trajectories:
    return compute_trajectories(MomentEncoder(), CLOUDS, IDS, steps=48, length_scale=10.0)


def test_rotation_series_runs_from_0_to_2pi_about_each_axis():
    angles, rots = rotation_series(("x", "y", "z"), 5)
    np.testing.assert_allclose(angles, np.linspace(0, 2 * math.pi, 5))
    assert rots.shape == (15, 3, 3)
    # about x the x axis is fixed; about z the z axis is fixed
    torch.testing.assert_close(rots[:5] @ torch.tensor([1.0, 0, 0]), torch.tensor([1.0, 0, 0]).expand(5, 3))
    torch.testing.assert_close(rots[10:] @ torch.tensor([0, 0, 1.0]), torch.tensor([0, 0, 1.0]).expand(5, 3))
    with pytest.raises(ValueError, match="steps"):
        rotation_series(("x",), 1)


def test_trajectory_shapes(equivariant_traj):
    t = equivariant_traj
    assert t.embeddings.shape == (3, 3, 48, 5) and t.shape == (3, 3, 48, 5)
    assert t.ids == IDS and t.axes == ("x", "y", "z") and t.angles.shape == (48,)
    assert t.angles[0] == 0 and t.angles[-1] == pytest.approx(2 * math.pi)


def test_equivariant_encoder_traces_closed_constant_speed_loops(equivariant_traj):
    reg = loop_regularity(equivariant_traj)
    assert reg["diameter"].min() > 0.05
    assert reg["closure"].max() < 1e-5  # e(2π) = e(0)
    assert reg["speed_cv"].max() < 1e-3  # an orthogonal action moves at constant speed
    assert np.all((reg["planarity"] > 0) & (reg["planarity"] <= 1 + 1e-12))
    summary = regularity_summary(equivariant_traj)
    assert set(summary) == {"loop_closure_mean", "loop_speed_cv_mean", "loop_planarity_mean", "loop_diameter_mean"}


def test_an_invariant_encoder_barely_moves_and_a_non_equivariant_one_is_irregular(equivariant_traj):
    still = compute_trajectories(MomentEncoder(invariant=True), CLOUDS, IDS, steps=24, length_scale=10.0)
    assert loop_regularity(still)["diameter"].max() < 1e-4

    def embed(c, f, r):
        return nonequivariant_embed([c] * len(r), None, rotations=r.double())

    tangled = compute_trajectories(None, CLOUDS, IDS, steps=48, length_scale=1.0, embed=embed)
    assert tangled.embeddings.shape[:3] == (3, 3, 48)
    assert np.nanmean(loop_regularity(tangled)["speed_cv"]) > 100 * loop_regularity(equivariant_traj)["speed_cv"].max()


def test_inputs_can_be_a_mapping_a_list_or_a_store_like_object():
    by_map = compute_trajectories(MomentEncoder(), dict(zip(IDS, CLOUDS)), IDS[:2], steps=6, axes=("z",), length_scale=1.0)
    by_list = compute_trajectories(MomentEncoder(), CLOUDS[:2], None, steps=6, axes=("z",), length_scale=1.0)
    np.testing.assert_allclose(by_map.embeddings, by_list.embeddings)
    assert by_list.ids == ["0", "1"] and by_map.embeddings.shape == (2, 1, 6, 5)

    class Store:
        ids = ["A", "B", "C"]

        def __getitem__(self, i):
            return CLOUDS[i]

        def features(self, i):
            return np.zeros(len(CLOUDS[i]), dtype=np.uint8)

        def split(self, name):
            return np.array([0, 2]) if name == "test" else np.array([1])

        def __len__(self):
            return 3

    by_store = compute_trajectories(MomentEncoder(), Store(), ["C"], steps=6, axes=("z",), length_scale=1.0)
    np.testing.assert_allclose(by_store.embeddings[0], compute_trajectories(
        MomentEncoder(), [CLOUDS[2]], None, steps=6, axes=("z",), length_scale=1.0).embeddings[0])
    with pytest.raises(KeyError, match="Z"):
        compute_trajectories(MomentEncoder(), Store(), ["Z"], steps=6, length_scale=1.0)
    assert sample_ids(Store(), 2, seed=0) == sample_ids(Store(), 2, seed=0)
    assert set(sample_ids(Store(), 2, seed=1)) == {"A", "C"}  # the test split when it is large enough
    assert len(sample_ids(Store(), 3, seed=1)) == 3  # otherwise the whole store


def test_projection_is_one_pca_fitted_on_all_points_of_the_run(equivariant_traj):
    p2 = project_trajectories(equivariant_traj, n_components=2)
    p3 = project_trajectories(equivariant_traj, n_components=3)
    assert p2.points.shape == (3, 3, 48, 2) and p3.points.shape == (3, 3, 48, 3)
    np.testing.assert_allclose(p3.points[..., :2], p2.points, atol=1e-10)
    assert 0 < p2.explained_variance_ratio.sum() <= p3.explained_variance_ratio.sum() <= 1 + 1e-12
    np.testing.assert_allclose(p2.components @ p2.components.T, np.eye(2), atol=1e-10)
    flat = equivariant_traj.embeddings.reshape(-1, 5)
    np.testing.assert_allclose(p2.points.reshape(-1, 2), (flat - flat.mean(0)) @ p2.components.T, atol=1e-10)
    np.testing.assert_array_equal(project_trajectories(equivariant_traj).points, p2.points)  # deterministic
    with pytest.raises(ValueError, match="n_components"):
        project_trajectories(equivariant_traj, n_components=4)


def test_centring_each_protein_removes_the_offset_between_proteins():
    from protein_care.trajectories import Trajectories, project_trajectories

    rng = np.random.default_rng(0)
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    loop = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], axis=-1)  # (S, 3) unit circle
    offsets = np.array([[100.0, 0, 0], [0, 100.0, 0]])
    emb = np.stack([np.stack([loop + o] * 3) for o in offsets])  # (P=2, A=3, S, 3)
    emb = emb + 1e-9 * rng.standard_normal(emb.shape)
    traj = Trajectories(ids=["a", "b"], axes=("x", "y", "z"), angles=angles, embeddings=emb)
    plain = project_trajectories(traj, 2)
    centred = project_trajectories(traj, 2, center_each_protein=True)
    # without centring the offset takes almost all the variance; with it the loops do
    assert plain.explained_variance_ratio[0] > 0.99
    assert abs(centred.explained_variance_ratio.sum() - 1.0) < 1e-6
    radius = np.linalg.norm(centred.points, axis=-1)
    assert np.allclose(radius, 1.0, atol=1e-6)
