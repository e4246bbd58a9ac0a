"""The trainer's stacked views (protein_care.training.views): each view does what
protein_care.augment's function of the same kind does, laid out as one batch."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protein_care.augment import center_and_scale, centroids
from protein_care.geometry import solve_wahba
from protein_care.metrics import geodesic_angle
from protein_care.training.views import (
    VIEW_KINDS, StackedViews, default_view_window, split_steps, stacked_views, step_view_kinds,
)

SIZES = [7, 12, 5, 9, 16, 8, 6, 10]


def clouds(sizes=SIZES, seed=0):
    """Anisotropic clouds far from the origin, float64; ``x`` numbers the points."""
    g = torch.Generator().manual_seed(seed)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    pos = torch.randn(batch.numel(), 3, generator=g, dtype=torch.float64) * torch.tensor([10.0, 4.0, 1.5], dtype=torch.float64)
    pos = pos + 50 * torch.randn(len(sizes), 3, generator=g, dtype=torch.float64)[batch]
    return pos, torch.arange(batch.numel()), batch, len(sizes)


def build(kinds, seed=1, **kw):
    pos, x, batch, b = clouds()
    settings_ = dict(length_scale=2.0, n_split=2, generator=torch.Generator().manual_seed(seed), jitter=0.0,
                     keep_fraction=0.6, max_angle=20.0)
    settings_.update(kw)
    return stacked_views(pos, x, batch, b, kinds, **settings_), (pos, x, batch, b)


def rotation_of_each_cloud(view, centred, batch, b):
    """Per cloud, R with view ≈ R · centred, and the largest residual."""
    found, worst = [], 0.0
    for k in range(b):
        a, c = centred[batch == k], view.pos[view.batch == k]
        r = solve_wahba(a, c)
        found.append(r)
        worst = max(worst, float((a @ r.T - c).abs().max()))
    return torch.stack(found), worst


def test_step_view_kinds_follow_the_order_the_loss_reads():
    assert step_view_kinds("rotation", equivariance=True, split=False) == ["rotation", "rotation", "chunk", "chunk"]
    assert step_view_kinds("points", equivariance=False, split=False) == ["points", "points"]
    assert step_view_kinds("points", equivariance=True, split=True) == [
        "rotation", "rotation", "points", "points", "chunk", "chunk"]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(VIEW_KINDS), min_size=1, max_size=6), st.integers(0, 2**31 - 1))
def test_layout_view_k_holds_clouds_kB_to_kB_plus_B_in_order(kinds, seed):
    stacked, (pos, x, batch, b) = build(kinds, seed)
    assert isinstance(stacked, StackedViews) and stacked.num_views == len(kinds) and stacked.num_graphs == len(kinds) * b
    assert bool((stacked.batch[1:] >= stacked.batch[:-1]).all())  # sorted: each view's points contiguous
    views = stacked.views()
    sizes = torch.bincount(batch, minlength=b)
    for kind, view in zip(kinds, views):
        counts = torch.bincount(view.batch, minlength=b)
        expected = torch.ceil(sizes * 0.6).long() if kind in ("points", "posed-points") else sizes
        assert torch.equal(counts, expected)
        assert torch.equal(view.batch, batch[view.x])  # every point keeps its cloud and its features
        torch.testing.assert_close(centroids(view.pos, view.batch, b), torch.zeros(b, 3, dtype=pos.dtype),
                                   atol=1e-12, rtol=0)


def test_rotation_views_give_every_cloud_its_own_haar_rotation_about_its_centroid():
    stacked, (pos, x, batch, b) = build(["rotation", "rotation"])
    centred = center_and_scale(pos, batch, b, 2.0)
    r1, e1 = rotation_of_each_cloud(stacked.views()[0], centred, batch, b)
    r2, e2 = rotation_of_each_cloud(stacked.views()[1], centred, batch, b)
    assert max(e1, e2) < 1e-9  # pure rotations of the centred, scaled clouds
    for r in (r1, r2):
        assert (geodesic_angle(r[:, None], r[None, :]) + 10 * torch.eye(b, dtype=r.dtype)).min() > 1e-3
    assert (geodesic_angle(r1, r2) > 1e-3).all()


def test_chunk_views_share_one_rotation_per_chunk_and_differ_between_chunks_and_views():
    stacked, (pos, x, batch, b) = build(["rotation", "rotation", "chunk", "chunk"], n_split=2)
    centred = center_and_scale(pos, batch, b, 2.0)
    rotations = []
    for view in stacked.views()[2:]:
        r, worst = rotation_of_each_cloud(view, centred, batch, b)
        assert worst < 1e-9
        torch.testing.assert_close(r[:4], r[:1].expand(4, 3, 3), atol=1e-9, rtol=0)
        torch.testing.assert_close(r[4:], r[4:5].expand(4, 3, 3), atol=1e-9, rtol=0)
        assert geodesic_angle(r[0], r[4]) > 1e-3
        rotations.append(r)
    assert geodesic_angle(rotations[0][0], rotations[1][0]) > 1e-3  # the two equivariance views differ


def test_small_rotation_views_stay_within_the_angle():
    stacked, (pos, x, batch, b) = build(["small-rotation", "small-rotation"], max_angle=20.0)
    centred = center_and_scale(pos, batch, b, 2.0)
    for view in stacked.views():
        r, worst = rotation_of_each_cloud(view, centred, batch, b)
        angles = geodesic_angle(torch.eye(3, dtype=r.dtype).expand(b, 3, 3), r)
        assert worst < 1e-9 and float(angles.max()) <= math.radians(20.0) + 1e-9 and float(angles.min()) > 0


def test_points_views_are_independent_subsets_centred_after_the_subset_and_jittered():
    stacked, (pos, x, batch, b) = build(["points", "points"])
    v1, v2 = stacked.views()
    for view in (v1, v2):  # no jitter: the kept points, centred on their own centroid, over the scale
        kept = pos[view.x]
        torch.testing.assert_close(view.pos, center_and_scale(kept, view.batch, b, 2.0))
    assert not torch.equal(v1.x, v2.x)
    jittered, _ = build(["points"], jitter=0.5, keep_fraction=1.0)
    noise = jittered.pos * 2.0 - center_and_scale(pos, batch, b, 1.0)
    assert 0.3 < float(noise.std()) < 0.7  # ~0.5 Å per coordinate (less the centroid's share)


def test_posed_points_views_share_one_haar_pose_per_cloud_and_differ_only_in_subset_and_jitter():
    stacked, (pos, x, batch, b) = build(["posed-points", "posed-points"], keep_fraction=1.0)
    v1, v2 = stacked.views()
    torch.testing.assert_close(v1.pos, v2.pos, atol=1e-12, rtol=0)  # no jitter, all points: the same view
    centred = center_and_scale(pos, batch, b, 2.0)
    poses, worst = rotation_of_each_cloud(v1, centred, batch, b)
    assert worst < 1e-9  # a rotation of each centred cloud about its centroid
    assert (geodesic_angle(torch.eye(3, dtype=poses.dtype).expand(b, 3, 3), poses) > 1e-3).all()  # not the file's frame
    assert (geodesic_angle(poses[:, None], poses[None, :]) + 10 * torch.eye(b, dtype=poses.dtype)).min() > 1e-3
    # with subsets and jitter: each view is a jittered subset of the same posed cloud
    stacked, _ = build(["posed-points", "posed-points"], keep_fraction=0.6, jitter=0.0)
    subsets = stacked.views()
    assert not torch.equal(subsets[0].x, subsets[1].x)
    for view in subsets:
        rotated = torch.einsum("nij,nj->ni", poses[view.batch], pos[view.x])  # the kept points in the pose
        torch.testing.assert_close(view.pos, center_and_scale(rotated, view.batch, b, 2.0))


def test_posed_points_poses_are_haar():
    sizes = [4] * 3000
    pos, x, batch, b = clouds(sizes, seed=3)
    stacked = stacked_views(pos, x, batch, b, ["posed-points"], length_scale=1.0, generator=torch.Generator().manual_seed(0),
                            jitter=0.0, keep_fraction=1.0)
    poses, _ = rotation_of_each_cloud(stacked.views()[0], center_and_scale(pos, batch, b, 1.0), batch, b)
    trace = poses.diagonal(dim1=1, dim2=2).sum(-1)
    # Haar on SO(3): E[tr R] = 0 and E[(tr R)^2] = 1 (sd of the trace 1, of its square ~1.41)
    assert abs(float(trace.mean())) < 0.1 and abs(float((trace**2).mean()) - 1) < 0.15


def haar_trace_moments(rotations):
    """E[tr R] and E[(tr R)^2] over ``rotations`` (Haar on SO(3): 0 and 1)."""
    trace = rotations.diagonal(dim1=-2, dim2=-1).sum(-1).reshape(-1)
    return float(trace.mean()), float((trace**2).mean())


def rotations_of_small_clouds(view, centred, b, n):
    """Per cloud of ``n`` points (clouds stored one after another), R with view = R · centred,
    by least squares over all clouds at once (a generic 4-point centred cloud spans 3-D)."""
    a, c = centred.reshape(b, n, 3), view.pos.reshape(b, n, 3)
    r_t = torch.linalg.lstsq(a, c).solution  # c = a @ R.T
    assert float((a @ r_t - c).abs().max()) < 1e-9  # a pure rotation of each centred cloud
    return r_t.transpose(1, 2)


@pytest.mark.parametrize("seed", [0, 1])
def test_rotation_and_chunk_views_are_haar(seed):
    """The trainer's Haar views (both invariance views, and each chunk's rotation of both
    equivariance views, chunks of one cloud here): E[tr R] = 0 and E[(tr R)^2] = 1 over
    3,000 draws per view (sd of the mean trace 0.018, of the mean square 0.026)."""
    sizes = [4] * 3000
    pos, x, batch, b = clouds(sizes, seed=3)
    kinds = ["rotation", "rotation", "chunk", "chunk"]
    stacked = stacked_views(pos, x, batch, b, kinds, length_scale=1.0, n_split=b,
                            generator=torch.Generator().manual_seed(seed))
    centred = center_and_scale(pos, batch, b, 1.0)
    for kind, view in zip(kinds, stacked.views()):
        assert torch.equal(view.batch, batch)
        r = rotations_of_small_clouds(view, centred, b, 4)
        torch.testing.assert_close(torch.linalg.det(r), torch.ones(b, dtype=r.dtype), atol=1e-9, rtol=0)
        mean, square = haar_trace_moments(r)
        assert abs(mean) < 0.1 and abs(square - 1) < 0.15, (kind, mean, square)


def test_mixed_runs_keep_their_order_and_the_same_seed_gives_the_same_views():
    kinds = ["rotation", "rotation", "points", "points", "chunk", "chunk"]
    a, (pos, x, batch, b) = build(kinds, seed=5)
    c, _ = build(kinds, seed=5)
    d, _ = build(kinds, seed=6)
    assert torch.equal(a.pos, c.pos) and torch.equal(a.batch, c.batch) and not torch.equal(a.pos, d.pos)
    views = a.views()
    assert [int(v.pos.shape[0]) for v in views[:2]] == [sum(SIZES)] * 2
    assert int(views[2].pos.shape[0]) < sum(SIZES)  # the points views sit in the middle


def test_features_may_be_absent():
    pos, _, batch, b = clouds()
    out = stacked_views(pos, None, batch, b, ["points", "chunk"], length_scale=1.0, n_split=4)
    assert out.x is None and out.num_graphs == 2 * b


def test_bad_layouts_are_refused_with_the_argument_named():
    pos, x, batch, b = clouds()
    with pytest.raises(ValueError, match="n_split=3 must divide"):
        stacked_views(pos, x, batch, b, ["chunk", "chunk"], length_scale=1.0, n_split=3)
    with pytest.raises(ValueError, match="view kinds"):
        stacked_views(pos, x, batch, b, ["spin"], length_scale=1.0)
    with pytest.raises(ValueError, match="view kinds"):
        stacked_views(pos, x, batch, b, [], length_scale=1.0)


# ----------------------------------------------------------------------------- windows of steps


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(VIEW_KINDS), min_size=1, max_size=5), st.sampled_from([1, 2, 4]), st.integers(0, 2**31 - 1))
def test_split_steps_gives_each_step_its_clouds_in_every_view(kinds, steps, seed):
    """Views made for W steps of B clouds at once (W·B clouds) split into W steps whose
    view k, cloud j is exactly the window's view k, cloud s·B + j."""
    b = len(SIZES) // steps
    stacked, _ = build(kinds, seed, n_split=steps)  # one chunk per step
    per_step = split_steps(stacked, steps)
    assert len(per_step) == steps
    window_views = stacked.views()
    for s, step in enumerate(per_step):
        assert step.num_views == len(kinds) and step.num_graphs == len(kinds) * b
        assert bool((step.batch[1:] >= step.batch[:-1]).all())
        for k, view in enumerate(step.views()):
            whole = window_views[k]
            mine = (whole.batch >= s * b) & (whole.batch < (s + 1) * b)
            assert torch.equal(view.pos, whole.pos[mine]) and torch.equal(view.x, whole.x[mine])
            assert torch.equal(view.batch, whole.batch[mine] - s * b)


def test_a_window_keeps_every_chunk_inside_one_step():
    """Two steps of 4 clouds, 2 chunks each (n_split 2·W over the window): every step's
    equivariance views have 2 chunks of 2 clouds sharing one rotation each."""
    stacked, (pos, x, batch, b) = build(["rotation", "rotation", "chunk", "chunk"], n_split=4)
    centred = center_and_scale(pos, batch, b, 2.0)
    for s, step in enumerate(split_steps(stacked, 2)):
        mine = (batch >= 4 * s) & (batch < 4 * s + 4)
        for view in step.views()[2:]:
            r, worst = rotation_of_each_cloud(view, centred[mine], batch[mine] - 4 * s, 4)
            assert worst < 1e-9
            torch.testing.assert_close(r[1], r[0], atol=1e-9, rtol=0)
            torch.testing.assert_close(r[3], r[2], atol=1e-9, rtol=0)
            assert geodesic_angle(r[0], r[2]) > 1e-3


def test_split_steps_refuses_a_window_that_does_not_divide():
    stacked, _ = build(["rotation", "rotation"])
    with pytest.raises(ValueError, match="do not split into 3 steps"):
        split_steps(stacked, 3)


def test_default_view_window_is_one_on_a_cpu_and_bounded_on_a_gpu():
    assert default_view_window(torch.device("cpu"), 1000) == 1
    assert default_view_window(torch.device("cuda"), 4 * 64 * 300) == 16
    assert default_view_window(torch.device("cuda"), 4 * 256 * 300) == 13
    assert default_view_window(torch.device("cuda"), 4 * 1024 * 300) == 1  # device-bound: no gain
    assert default_view_window(torch.device("cuda"), 10**9) == 1
