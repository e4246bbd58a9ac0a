"""Batched augmentations (protein_care.augment): what each view does to each cloud."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protein_care.augment import (
    cap_points,
    center_and_scale,
    centroids,
    chunk_of_cloud,
    concat_views,
    equivariance_views,
    invariance_views,
    random_subsets,
    rotate_per_chunk,
    rotate_per_cloud,
    rotate_points,
    small_rotations,
)
from protein_care.geometry import random_rotations, solve_wahba
from protein_care.metrics import geodesic_angle

SIZES = [7, 12, 5, 9, 16, 8, 6, 10]


def clouds(sizes=SIZES, seed=0, spread=10.0):
    """Anisotropic clouds far from the origin, float64 (exact rotation recovery)."""
    g = torch.Generator().manual_seed(seed)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    pos = torch.randn(batch.numel(), 3, generator=g, dtype=torch.float64) * torch.tensor([spread, 4.0, 1.5], dtype=torch.float64)
    pos = pos + 50 * torch.randn(len(sizes), 3, generator=g, dtype=torch.float64)[batch]
    x = torch.randint(0, 21, (batch.numel(),), generator=g)
    return pos, x, batch, len(sizes)


def recovered_rotations(before, after, batch, num_graphs):
    """Per cloud, the rotation R with after ≈ R before (both centred first)."""
    a = center_and_scale(before, batch, num_graphs, 1.0)
    b = center_and_scale(after, batch, num_graphs, 1.0)
    return torch.stack([solve_wahba(a[batch == k], b[batch == k]) for k in range(num_graphs)])


def pairwise(p):
    return torch.cdist(p, p)


# ----------------------------------------------------------------------------- centre and scale


def test_center_and_scale_centres_each_cloud_and_uses_one_global_scale():
    pos, _, batch, b = clouds()
    out = center_and_scale(pos, batch, b, 7.0)
    torch.testing.assert_close(centroids(out, batch, b), torch.zeros(b, 3, dtype=pos.dtype), atol=1e-12, rtol=0)
    # one scale for all: every cloud's shape is divided by the same number
    torch.testing.assert_close(out * 7.0 + centroids(pos, batch, b)[batch], pos)
    rg = lambda p: centroids(p.pow(2).sum(1, keepdim=True).expand(-1, 3), batch, b)[:, 0].sqrt()  # noqa: E731
    ratio_before = rg(center_and_scale(pos, batch, b, 1.0))
    torch.testing.assert_close(rg(out) * 7.0, ratio_before)  # sizes keep their ratios


def test_center_and_scale_rejects_a_non_positive_scale():
    pos, _, batch, b = clouds()
    with pytest.raises(ValueError, match="length_scale"):
        center_and_scale(pos, batch, b, 0.0)


# ----------------------------------------------------------------------------- rotations


def test_rotate_per_cloud_applies_each_clouds_matrix_and_preserves_distances():
    pos, _, batch, b = clouds()
    centred = center_and_scale(pos, batch, b, 1.0)
    rot = random_rotations(b, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = rotate_per_cloud(centred, batch, rot)
    for k in range(b):
        m = batch == k
        torch.testing.assert_close(out[m], centred[m] @ rot[k].T)
        torch.testing.assert_close(pairwise(out[m]), pairwise(centred[m]))
    # about the centroid: the centred clouds' centroids stay at the origin
    torch.testing.assert_close(centroids(out, batch, b), torch.zeros(b, 3, dtype=pos.dtype), atol=1e-12, rtol=0)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 50), seed=st.integers(0, 2**31 - 1))
def test_rotate_points_is_the_matrix_product_point_by_point(n, seed):
    g = torch.Generator().manual_seed(seed)
    rot = torch.randn(n, 3, 3, generator=g, dtype=torch.float64)  # any matrices, not only rotations
    pos = torch.randn(n, 3, generator=g, dtype=torch.float64)
    out = rotate_points(rot, pos)
    assert out.shape == (n, 3)
    torch.testing.assert_close(out, (rot @ pos[:, :, None])[..., 0], rtol=1e-12, atol=1e-12)


def test_rotate_per_chunk_shares_one_rotation_within_a_chunk_and_differs_between_chunks():
    pos, _, batch, b = clouds()
    centred = center_and_scale(pos, batch, b, 1.0)
    out, rot = rotate_per_chunk(centred, batch, b, 4, torch.Generator().manual_seed(2), return_rotations=True)
    assert rot.shape == (4, 3, 3)
    found = recovered_rotations(centred, out, batch, b)
    chunk = chunk_of_cloud(b, 4)
    for k in range(b):
        torch.testing.assert_close(found[k], rot[chunk[k]], atol=1e-9, rtol=0)
    angles = geodesic_angle(rot[:, None], rot[None, :])
    assert (angles + torch.eye(4, dtype=angles.dtype) > 1e-3).all()  # chunks differ


def test_chunks_must_divide_the_batch():
    pos, _, batch, b = clouds()
    with pytest.raises(ValueError, match="n_split=3 must divide"):
        rotate_per_chunk(pos, batch, b, 3)


def test_invariance_views_rotation_mode_gives_every_cloud_its_own_haar_rotation():
    pos, x, batch, b = clouds()
    v1, v2 = invariance_views(pos, x, batch, b, length_scale=2.0, mode="rotation", generator=torch.Generator().manual_seed(3))
    centred = center_and_scale(pos, batch, b, 2.0)
    r1, r2 = recovered_rotations(centred, v1.pos, batch, b), recovered_rotations(centred, v2.pos, batch, b)
    for v, r in ((v1, r1), (v2, r2)):
        torch.testing.assert_close(centroids(v.pos, batch, b), torch.zeros(b, 3, dtype=pos.dtype), atol=1e-12, rtol=0)
        angles = geodesic_angle(r[:, None], r[None, :]) + 10 * torch.eye(b, dtype=r.dtype)
        assert angles.min() > 1e-3  # all different
        for k in range(b):  # pure rotations of the centred, scaled cloud
            m = batch == k
            torch.testing.assert_close(v.pos[m], centred[m] @ r[k].T, atol=1e-9, rtol=0)
    assert (geodesic_angle(r1, r2) > 1e-3).all()


@pytest.mark.parametrize("max_angle", [5.0, 30.0, 90.0])
def test_small_rotation_views_stay_within_the_angle_bound(max_angle):
    pos, x, batch, b = clouds(sizes=[8] * 32)
    views = invariance_views(pos, x, batch, b, length_scale=1.0, mode="small-rotation", max_angle=max_angle,
                             generator=torch.Generator().manual_seed(4))
    centred = center_and_scale(pos, batch, b, 1.0)
    eye = torch.eye(3, dtype=pos.dtype).expand(b, 3, 3)
    for view in views:
        angles = torch.rad2deg(geodesic_angle(eye, recovered_rotations(centred, view.pos, batch, b)))
        assert angles.max() <= max_angle + 1e-6
        assert angles.max() > 0.3 * max_angle  # and they do rotate


def test_small_rotations_follow_haar_measure_conditioned_on_the_angle():
    g = torch.Generator().manual_seed(5)
    n, max_angle = 20_000, 60.0
    r = small_rotations(n, max_angle, generator=g, dtype=torch.float64)
    torch.testing.assert_close(r @ r.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(n, 3, 3), atol=1e-12, rtol=0)
    assert torch.allclose(torch.linalg.det(r), torch.ones(n, dtype=torch.float64))
    theta = geodesic_angle(torch.eye(3, dtype=torch.float64).expand(n, 3, 3), r).sort().values
    t_max = math.radians(max_angle)
    cdf = (theta - torch.sin(theta)) / (t_max - math.sin(t_max))
    empirical = torch.arange(1, n + 1, dtype=torch.float64) / n
    assert (cdf - empirical).abs().max() < 0.02  # Kolmogorov–Smirnov distance
    # axes uniform: the mean rotation axis is near zero
    axis = torch.stack([r[:, 2, 1] - r[:, 1, 2], r[:, 0, 2] - r[:, 2, 0], r[:, 1, 0] - r[:, 0, 1]], 1)
    assert (torch.nn.functional.normalize(axis, dim=1).mean(0).abs() < 0.03).all()


def test_small_rotations_at_180_degrees_are_haar():
    r = small_rotations(20_000, 180.0, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    trace = torch.diagonal(r, dim1=1, dim2=2).sum(1)
    assert abs(float(trace.mean())) < 0.03 and abs(float(trace.pow(2).mean()) - 1.0) < 0.05


def test_points_views_do_not_rotate_and_keep_the_requested_fraction():
    pos, x, batch, b = clouds()
    views = invariance_views(pos, x, batch, b, length_scale=1.0, mode="points", jitter=0.0, keep_fraction=0.6,
                             generator=torch.Generator().manual_seed(7))
    keep = torch.ceil(torch.tensor(SIZES, dtype=torch.float64) * 0.6).long()
    for view in views:
        assert torch.equal(torch.bincount(view.batch, minlength=b), keep)
        assert view.x is not None and view.x.shape[0] == view.pos.shape[0]
        # every kept cloud is a subset of the original translated as a whole: no rotation
        for k in range(b):
            original, kept = pos[batch == k], view.pos[view.batch == k]
            best = min(float(torch.cdist(kept + (o - kept[0]), original).min(dim=1).values.max()) for o in original)
            assert best < 1e-9
    # and without subsets or jitter the view is the centred cloud itself
    same, _ = invariance_views(pos, x, batch, b, length_scale=1.0, mode="points", jitter=0.0, keep_fraction=1.0)
    torch.testing.assert_close(same.pos, center_and_scale(pos, batch, b, 1.0))


def test_posed_points_views_share_one_pose_per_cloud_that_is_not_the_files_frame():
    pos, x, batch, b = clouds()
    v1, v2 = invariance_views(pos, x, batch, b, length_scale=1.0, mode="posed-points", jitter=0.0, keep_fraction=1.0,
                              generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(v1.pos, v2.pos)  # no subset, no jitter: both views are the same posed cloud
    centred = center_and_scale(pos, batch, b, 1.0)
    poses = []
    for k in range(b):
        r = solve_wahba(centred[batch == k], v1.pos[v1.batch == k])
        torch.testing.assert_close(centred[batch == k] @ r.T, v1.pos[v1.batch == k])  # a rotation about the centroid
        assert geodesic_angle(torch.eye(3, dtype=r.dtype), r) > 1e-3
        poses.append(r)
    # with subsets (same seed, so the same poses, drawn first): each view is its own subset of
    # the cloud in that one pose, centred on the subset's centroid
    index = torch.arange(batch.numel())  # as features: which points each view kept
    w1, w2 = invariance_views(pos, index, batch, b, length_scale=1.0, mode="posed-points", jitter=0.0, keep_fraction=0.6,
                              generator=torch.Generator().manual_seed(7))
    assert not torch.equal(w1.x, w2.x)
    for view in (w1, w2):
        for k in range(b):
            kept = centred[view.x[view.batch == k]]
            torch.testing.assert_close(view.pos[view.batch == k], (kept - kept.mean(0)) @ poses[k].T)


def test_points_jitter_has_the_requested_size_in_angstrom():
    pos, x, batch, b = clouds(sizes=[400] * 4)
    view, _ = invariance_views(pos, x, batch, b, length_scale=5.0, mode="points", jitter=0.5, keep_fraction=1.0,
                               generator=torch.Generator().manual_seed(8))
    noise = view.pos * 5.0 - center_and_scale(pos, batch, b, 1.0)  # centroid shift is ~0.5/20 Å
    assert abs(float(noise.std()) - 0.5) < 0.03


def test_random_subsets_keep_at_least_one_point_and_preserve_order():
    batch = torch.repeat_interleave(torch.arange(4), torch.tensor([1, 2, 10, 3]))
    mask = random_subsets(batch, 4, 0.1, torch.Generator().manual_seed(9))
    assert torch.equal(torch.bincount(batch[mask], minlength=4), torch.tensor([1, 1, 1, 1]))
    with pytest.raises(ValueError, match="keep_fraction"):
        random_subsets(batch, 4, 0.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=6), st.integers(0, 12), st.integers(0, 2**31 - 1))
def test_cap_points_keeps_a_random_subset_of_at_most_the_cap_per_cloud_in_order(sizes, cap, seed):
    sizes_t = torch.tensor(sizes)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), sizes_t)
    pos = torch.arange(3 * batch.numel(), dtype=torch.float32).reshape(-1, 3)  # row k holds 3k, 3k+1, 3k+2
    x = torch.arange(batch.numel())
    p, xs, b = cap_points(pos, x, batch, len(sizes), cap, torch.Generator().manual_seed(seed))
    expected = sizes_t if cap == 0 else sizes_t.clamp(max=cap)
    assert torch.equal(torch.bincount(b, minlength=len(sizes)), expected)
    assert torch.equal(p[:, 0], 3 * xs.float())  # rows stay whole: coordinates and features of the same points
    assert torch.equal(b, batch[xs]) and bool((xs[1:] > xs[:-1]).all())  # original order, no repeats


def test_cap_points_is_reproducible_and_random_across_seeds():
    batch = torch.zeros(50, dtype=torch.long)
    pos = torch.randn(50, 3)
    draw = lambda seed: cap_points(pos, None, batch, 1, 10, torch.Generator().manual_seed(seed))[0]  # noqa: E731
    assert torch.equal(draw(1), draw(1)) and not torch.equal(draw(1), draw(2))
    with pytest.raises(ValueError, match="max_points"):
        cap_points(pos, None, batch, 1, -1)


def test_equivariance_views_rotate_whole_chunks():
    pos, x, batch, b = clouds()
    e1, e2 = equivariance_views(pos, x, batch, b, length_scale=1.0, n_split=2, generator=torch.Generator().manual_seed(10))
    centred = center_and_scale(pos, batch, b, 1.0)
    for view in (e1, e2):
        r = recovered_rotations(centred, view.pos, batch, b)
        torch.testing.assert_close(r[:4], r[:1].expand(4, 3, 3), atol=1e-9, rtol=0)
        torch.testing.assert_close(r[4:], r[4:5].expand(4, 3, 3), atol=1e-9, rtol=0)
        assert geodesic_angle(r[0], r[4]) > 1e-3


def test_concat_views_offsets_cloud_indices():
    pos, x, batch, b = clouds()
    views = invariance_views(pos, x, batch, b, length_scale=1.0, mode="points", generator=torch.Generator().manual_seed(11))
    stacked = concat_views(views)
    assert stacked.num_graphs == 2 * b
    n0 = views[0].pos.shape[0]
    assert torch.equal(stacked.batch[:n0], views[0].batch) and torch.equal(stacked.batch[n0:], views[1].batch + b)


def test_same_generator_seed_same_views():
    pos, x, batch, b = clouds()
    for mode in ("rotation", "small-rotation", "points", "posed-points"):
        a = invariance_views(pos, x, batch, b, length_scale=1.0, mode=mode, generator=torch.Generator().manual_seed(12))
        c = invariance_views(pos, x, batch, b, length_scale=1.0, mode=mode, generator=torch.Generator().manual_seed(12))
        assert torch.equal(a[0].pos, c[0].pos) and torch.equal(a[1].pos, c[1].pos)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_views_stay_on_the_batch_device():
    pos, x, batch, b = (t.cuda() if torch.is_tensor(t) else t for t in clouds())
    g = torch.Generator(device="cuda").manual_seed(0)
    for mode in ("rotation", "small-rotation", "points", "posed-points"):
        for view in invariance_views(pos, x, batch, b, length_scale=1.0, mode=mode, generator=g):
            assert view.pos.is_cuda and view.batch.is_cuda
    for view in equivariance_views(pos, x, batch, b, length_scale=1.0, n_split=4, generator=g):
        assert view.pos.is_cuda


def test_small_rotation_angles_invert_the_conditioned_cdf_exactly():
    # the angle of each sample solves θ − sin θ = u (θ_max − sin θ_max) for its uniform u
    for max_angle in (0.5, 10.0, 120.0):
        r = small_rotations(2000, max_angle, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
        theta = geodesic_angle(torch.eye(3, dtype=torch.float64).expand(2000, 3, 3), r)
        assert float(theta.max()) <= math.radians(max_angle) * (1 + 1e-9)
        g = torch.Generator().manual_seed(13)
        torch.randn(2000, 3, generator=g, dtype=torch.float64)  # the axes are drawn first
        u = torch.rand(2000, generator=g, dtype=torch.float64)
        t_max = math.radians(max_angle)
        torch.testing.assert_close(theta - torch.sin(theta), u * (t_max - math.sin(t_max)), atol=1e-12, rtol=1e-6)
