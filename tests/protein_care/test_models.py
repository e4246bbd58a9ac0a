"""Encoders (protein_care.models): the properties the issue states, for every encoder."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protein_care.models import ENCODERS, SplitEncoder, build_encoder, quadratic_monomials

SMALL = {"hidden": 32, "dim": 16, "phi_layers": 2, "rho_layers": 1, "heads": 2}


def make(encoder: str, seed: int = 0, **extra) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_encoder({**SMALL, "encoder": encoder, **extra})
    # Non-trivial BatchNorm statistics, so eval mode is a real affine map.
    model.trunk.norm.running_mean.uniform_(-0.5, 0.5)
    model.trunk.norm.running_var.uniform_(0.5, 2.0)
    return model.eval()


def random_batch(sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    pos = torch.randn(n, 3, generator=g)
    x = torch.randint(0, 21, (n,), generator=g)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return pos, x, batch


@pytest.mark.parametrize("encoder", ENCODERS)
@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(1, 25), min_size=1, max_size=5), seed=st.integers(0, 10_000))
def test_permutation_invariance(encoder, sizes, seed):
    model = make(encoder, use_residue_features=True)
    pos, x, batch = random_batch(sizes, seed)
    # Shuffle points within each cloud (the batch vector stays sorted, as PyG's is).
    g = torch.Generator().manual_seed(seed + 1)
    key = batch.double() + torch.rand(batch.numel(), generator=g, dtype=torch.float64)
    perm = torch.argsort(key)
    with torch.no_grad():
        z = model(pos, x, batch, len(sizes))
        z_perm = model(pos[perm], x[perm], batch[perm], len(sizes))
    torch.testing.assert_close(z_perm, z, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_batching_equals_one_by_one(encoder):
    model = make(encoder, use_residue_features=True)
    sizes = [5, 17, 1, 30, 9]
    pos, x, batch = random_batch(sizes, 3)
    with torch.no_grad():
        together = model(pos, x, batch, len(sizes))
        alone = []
        for b in range(len(sizes)):
            m = batch == b
            alone.append(model(pos[m], x[m], torch.zeros(int(m.sum()), dtype=torch.long), 1))
    torch.testing.assert_close(together, torch.cat(alone), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("embedding", ["single", "split"])
def test_output_rows_are_unit_vectors(encoder, embedding):
    model = make(encoder, embedding=embedding)
    pos, x, batch = random_batch([4, 11, 7], 1)
    z = model(pos * 10, x, batch, 3)
    assert z.shape == (3, SMALL["dim"])
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3))


@pytest.mark.parametrize("encoder", ENCODERS)
def test_gradients_reach_every_parameter_in_training_mode(encoder):
    torch.manual_seed(0)
    model = build_encoder({**SMALL, "encoder": encoder, "use_residue_features": True}).train()
    pos, x, batch = random_batch([6, 9, 4, 8], 2)
    model(pos, x, batch, 4).pow(3).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing


@pytest.mark.parametrize("pose_weight", [0.5, 0.1])
def test_split_embedding_is_two_unit_blocks_weighted_by_pose_weight(pose_weight):
    model = make("deepset", embedding="split", split_pose_weight=pose_weight)
    assert isinstance(model, SplitEncoder)
    pos, x, batch = random_batch([5, 8], 4)
    z_a, z_b = model(pos, x, batch, 2, blocks=True)
    assert z_a.shape == z_b.shape == (2, SMALL["dim"] // 2)
    torch.testing.assert_close(z_a.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(z_b.norm(dim=1), torch.ones(2))
    s = pose_weight
    z = model(pos, x, batch, 2)
    torch.testing.assert_close(z, torch.cat([math.sqrt(1 - s) * z_a, math.sqrt(s) * z_b], 1))
    torch.testing.assert_close(z.norm(dim=1), torch.ones(2))
    with pytest.raises(ValueError, match="split_pose_weight"):
        make("deepset", embedding="split", split_pose_weight=1.0)


def test_quadratic_features_mean_pool_to_the_second_moment_matrix():
    pos = torch.randn(50, 3, dtype=torch.float64)
    pooled = quadratic_monomials(pos).mean(0)  # xx, yy, zz, xy, xz, yz
    second = pos.T @ pos / 50
    expected = torch.stack([second[0, 0], second[1, 1], second[2, 2], second[0, 1], second[0, 2], second[1, 2]])
    torch.testing.assert_close(pooled, expected)


def test_point_feature_options_change_the_input_width():
    xyz = build_encoder({**SMALL, "point_features": "xyz"})
    quad = build_encoder({**SMALL, "point_features": "xyz+quadratic", "use_residue_features": True, "residue_embedding_dim": 4})
    assert xyz.trunk.features.out_channels == 3
    assert quad.trunk.features.out_channels == 9 + 4


def test_residue_features_are_required_when_configured():
    model = make("deepset", use_residue_features=True)
    pos, _, batch = random_batch([3, 4])
    with pytest.raises(ValueError, match="residue-type"):
        model(pos, None, batch, 2)


@pytest.mark.parametrize(
    "bad, match",
    [({"encoder": "gnn"}, "encoder"), ({"point_features": "xyz2"}, "point_features"), ({"embedding": "split", "dim": 7}, "even"),
     ({"norm": "layer"}, "norm"), ({"pool": "median"}, "pool")],
)
def test_bad_configs_are_errors_naming_the_key(bad, match):
    with pytest.raises(ValueError, match=match):
        build_encoder({**SMALL, **bad})


def test_same_seed_same_parameters():
    a, b = make("deepset", seed=5), make("deepset", seed=5)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("trunks", ["separate", "shared"])
def test_split_blocks_of_parts_equal_the_blocks_of_the_whole_batch_in_eval(trunks):
    """Training computes block A on the first clouds only and block B on the rest; in eval
    mode (fixed BatchNorm statistics) that equals slicing the blocks of the whole batch."""
    model = make("deepset", embedding="split", split_trunks=trunks)
    assert (model.trunk_b is None) == (trunks == "shared")
    pos, x, batch = random_batch([5, 8, 6, 7], 4)
    z_a, z_b = model(pos, x, batch, 4, blocks=True)
    part_a, part_b = model(pos, x, batch, 4, blocks=True, split_at=2)
    torch.testing.assert_close(part_a, z_a[:2])
    torch.testing.assert_close(part_b, z_b[2:])


def test_separate_split_trunks_do_not_share_parameters():
    model = make("deepset", embedding="split", split_trunks="separate")
    a = {id(p) for p in model.trunk.parameters()}
    b = {id(p) for p in model.trunk_b.parameters()}
    assert a and b and not (a & b)


def _views(n_views: int, clouds: int, seed: int):
    """``n_views`` stacked views of ``clouds`` clouds each (view-major), and each view apart."""
    parts = [random_batch([6 + (i + v) % 4 for i in range(clouds)], seed + v) for v in range(n_views)]
    pos = torch.cat([p for p, _, _ in parts])
    x = torch.cat([f for _, f, _ in parts])
    batch = torch.cat([b + v * clouds for v, (_, _, b) in enumerate(parts)])
    return (pos, x, batch), parts


@pytest.mark.parametrize("encoder", ["deepset", "pointnet"])
def test_per_view_statistics_equal_separate_training_passes(encoder):
    """``views=V`` in training: one stacked pass gives what V separate passes give (each
    view's own BatchNorm statistics, running statistics updated once per view), as the
    release's four passes; ``views=1`` normalises over all views together, which differs."""
    (pos, x, batch), parts = _views(4, 8, seed=3)
    stacked, separate = make(encoder).train(), make(encoder).train()
    z = stacked(pos, x, batch, 32, views=4)
    expected = torch.cat([separate(p, f, b, 8) for p, f, b in parts])
    torch.testing.assert_close(z, expected)
    torch.testing.assert_close(stacked.trunk.norm.running_mean, separate.trunk.norm.running_mean)
    joint = make(encoder).train()(pos, x, batch, 32)
    assert (joint - expected).abs().max() > 1e-3


@pytest.mark.parametrize("trunks", ["separate", "shared"])
def test_split_blocks_take_per_view_statistics_of_their_own_views(trunks):
    (pos, x, batch), parts = _views(4, 6, seed=5)
    model, reference = (make("deepset", embedding="split", split_trunks=trunks).train() for _ in range(2))
    z_a, z_b = model(pos, x, batch, 24, blocks=True, split_at=12, views=4)  # A: views 0-1, B: views 2-3
    blocks = [reference(p, f, b, 6, blocks=True) for p, f, b in parts]
    torch.testing.assert_close(z_a, torch.cat([blocks[0][0], blocks[1][0]]))
    torch.testing.assert_close(z_b, torch.cat([blocks[2][1], blocks[3][1]]))


@pytest.mark.parametrize("embedding", ["single", "split"])
def test_embeddings_are_float32_unit_rows_under_bf16_autocast(embedding):
    """The head and the normalisation leave autocast (protein_care.precision): rounding z
    to bf16 put a ~1e-4 floor under L_equi, where float32 gives ~1e-9."""
    model = make("deepset", embedding=embedding)
    pos, x, batch = random_batch([30, 40, 25, 35])
    exact = model(pos, x, batch, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = model(pos, x, batch, 4)
        blocks = model(pos, x, batch, 4, blocks=True) if embedding == "split" else (z,)
    assert z.dtype == torch.float32 and all(b.dtype == torch.float32 for b in blocks)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(z, exact, atol=0.05, rtol=0)  # only the trunk was rounded
