"""The crop, resize, flip and normalisation of the batched pipeline against
``torchvision.transforms.v2.functional``: float images to 1e-5 (absolute, in [0, 1]); on
uint8 input the resized crop is within one uint8 level of torchvision's uint8 kernel
(which rounds its output)."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from vision_benchmarks import geometric as G
from vision_benchmarks.augment import sample_crops

ATOL = 1e-5


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.mark.parametrize("shape", [(32, 32), (96, 96), (40, 28)])
def test_resized_crop_matches_torchvision_antialiased_bilinear(shape, gen):
    """Upsampling (crop < 32) and downsampling (STL10's 96 → 32) alike."""
    h, w = shape
    x = torch.rand(12, 3, h, w, generator=gen)
    boxes = sample_crops(12, h, w, (0.08, 1.0), (3 / 4, 4 / 3), gen)
    ours = G.resized_crop(x, boxes, 32)
    for k in range(12):
        expected = TF.resized_crop(x[k], *boxes[k].tolist(), [32, 32], antialias=True)
        torch.testing.assert_close(ours[k], expected, atol=ATOL, rtol=0)


def test_resized_crop_of_uint8_is_within_one_level_of_torchvision(gen):
    x = torch.randint(0, 256, (8, 3, 96, 96), generator=gen, dtype=torch.uint8)
    boxes = sample_crops(8, 96, 96, (0.08, 1.0), (3 / 4, 4 / 3), gen)
    ours = G.resized_crop(x, boxes, 32) * 255
    for k in range(8):
        expected = TF.resized_crop(x[k], *boxes[k].tolist(), [32, 32], antialias=True).float()
        assert (ours[k] - expected).abs().max() <= 1.0 + 1e-3


def test_resize_of_the_whole_image_matches_torchvision_and_keeps_the_right_size_as_float(gen):
    x = torch.randint(0, 256, (4, 3, 96, 80), generator=gen, dtype=torch.uint8)
    ours = G.resize(x, 32)
    for k in range(4):
        expected = TF.resize(x[k].float() / 255, [32, 32], antialias=True)
        torch.testing.assert_close(ours[k], expected, atol=ATOL, rtol=0)
    same = G.resize(x[:, :, :32, :32], 32)
    assert same.dtype == torch.float32
    torch.testing.assert_close(same, x[:, :, :32, :32].float() / 255)


def test_flip_mirrors_only_the_masked_images_and_normalize_matches_torchvision(gen):
    x = torch.rand(5, 3, 6, 7, generator=gen)
    mask = torch.tensor([True, False, False, True, True])
    flipped = G.hflip(x, mask)
    mean, std = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
    normalised = G.normalize(x, mean, std)
    for k in range(5):
        torch.testing.assert_close(flipped[k], TF.horizontal_flip(x[k]) if mask[k] else x[k])
        torch.testing.assert_close(normalised[k], TF.normalize(x[k], list(mean), list(std)), atol=ATOL, rtol=0)
