"""Embedding clouds with a frozen encoder (protein_care.embedding)."""

import numpy as np
import pytest
import torch

from protein_care.embedding import embed_clouds, embed_rotation_series, pack_clouds
from protein_care.geometry import random_rotations
from protein_care.models import build_encoder

from .synthetic_store import SyntheticStore

CONFIG = {"hidden": 32, "dim": 16, "phi_layers": 2, "rho_layers": 1, "use_residue_features": True}


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    encoder = build_encoder(CONFIG)
    encoder.trunk.norm.running_mean.uniform_(-0.3, 0.3)
    store = SyntheticStore(12)
    coords = [store[i] for i in range(len(store))]
    features = [store.features(i) for i in range(len(store))]
    return encoder, coords, features


def test_embeddings_match_a_manual_centre_scale_forward(setup):
    encoder, coords, features = setup
    z = embed_clouds(encoder, coords, features, length_scale=8.0)
    assert z.shape == (len(coords), 16) and z.device.type == "cpu"
    encoder.eval()
    with torch.no_grad():
        for i in (0, 5):
            p = torch.as_tensor(coords[i])
            p = (p - p.mean(0)) / 8.0
            manual = encoder(p, torch.as_tensor(features[i]).long(), torch.zeros(len(p), dtype=torch.long), 1)
            torch.testing.assert_close(z[i : i + 1], manual, atol=1e-5, rtol=1e-4)


def test_rotation_is_about_the_centroid_and_translation_does_not_matter(setup):
    encoder, coords, features = setup
    rot = random_rotations(len(coords), generator=torch.Generator().manual_seed(1))
    z = embed_clouds(encoder, coords, features, length_scale=8.0, rotations=rot)
    rotated = []
    for c, r in zip(coords, rot.numpy()):
        centroid = c.mean(0)
        rotated.append((c - centroid) @ r.T + centroid + np.array([100.0, -40.0, 7.0], np.float32))
    torch.testing.assert_close(embed_clouds(encoder, rotated, features, length_scale=8.0), z, atol=1e-5, rtol=1e-4)


def test_batch_size_does_not_change_embeddings_and_training_flag_is_restored(setup):
    encoder, coords, features = setup
    encoder.train()
    a = embed_clouds(encoder, coords, features, length_scale=8.0, batch_size=5)
    b = embed_clouds(encoder, coords, features, length_scale=8.0, batch_size=100)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert encoder.training


def test_rotation_series_equals_embedding_the_rotated_copies(setup):
    encoder, coords, features = setup
    rot = random_rotations(7, generator=torch.Generator().manual_seed(2))
    series = embed_rotation_series(encoder, coords[3], features[3], rot, length_scale=8.0, batch_size=3)
    each = embed_clouds(encoder, [coords[3]] * 7, [features[3]] * 7, length_scale=8.0, rotations=rot)
    torch.testing.assert_close(series, each, atol=1e-5, rtol=1e-4)


def test_features_are_required_when_the_encoder_uses_them(setup):
    encoder, coords, _ = setup
    with pytest.raises(ValueError, match="features"):
        embed_clouds(encoder, coords, None, length_scale=8.0)
    with pytest.raises(ValueError, match="rotations"):
        embed_clouds(encoder, coords, None, length_scale=8.0, rotations=torch.eye(3)[None])


def test_pack_clouds_builds_a_pyg_style_batch():
    pos, x, batch, b = pack_clouds([np.zeros((2, 3)), np.ones((3, 3))], [np.array([1, 2]), np.array([3, 4, 5])])
    assert b == 2 and pos.dtype == torch.float32 and x.dtype == torch.long
    assert batch.tolist() == [0, 0, 1, 1, 1] and x.tolist() == [1, 2, 3, 4, 5]


def test_rotation_series_batches_stay_within_the_memory_budget_whatever_the_caller_asks():
    """A set transformer's attention grows with n²: a 1,500-point cloud takes 7 copies per
    batch (heads 4), not the 256 a caller may ask for (+4 GB); defaults come from the
    model's own (a config without ``heads`` is the 4-head default)."""
    from protein_care.embedding import clouds_per_batch, largest_cloud

    assert clouds_per_batch({"encoder": "set-transformer"}, 1500) == 2**26 // (4 * 1500**2) == 7
    assert clouds_per_batch({}, 20_000) == 2**26 // (20_000 * 256)  # deepset, hidden 256
    assert largest_cloud({"encoder": "set-transformer"}) == 4096
    torch.manual_seed(0)
    encoder = build_encoder({"encoder": "set-transformer", "hidden": 8, "dim": 4, "heads": 2, "phi_layers": 1,
                             "rho_layers": 1})
    sizes = []
    encoder.register_forward_hook(lambda module, args, out: sizes.append(args[3]))
    coords = torch.randn(2000, 3, generator=torch.Generator().manual_seed(1))
    rotations = random_rotations(40, generator=torch.Generator().manual_seed(2))
    embed_rotation_series(encoder, coords, None, rotations, length_scale=10.0, batch_size=256)
    per_batch = clouds_per_batch(encoder.config, 2000)
    assert per_batch == 2**26 // (2 * 2000**2) == 8 and sizes == [8] * 5
