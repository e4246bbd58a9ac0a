"""The fused colour ops (vision_benchmarks.color) against torchvision and against the
op-by-op definitions: the closed-form hue rotation, the one-blend-per-position
ColorJitter for every order of its 4 ops (both the sync-free and the indexed path).

Tolerance: 1e-5 absolute on images in [0, 1], as tests/vision_benchmarks/test_augment.py."""

from __future__ import annotations

import itertools

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from vision_benchmarks import color as C

ATOL = 1e-5
TV_OPS = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)


def _hard_images(n: int, generator) -> torch.Tensor:
    """Random colours with blocks of grey pixels, fully saturated colours (0/1 channels),
    two channels tied at the maximum, quarter levels (many ties) and black/white."""
    x = torch.rand(n, 3, 12, 12, generator=generator)
    x[:, :, :3] = x[:, :1, :3]  # grey rows
    x[:, :, 3:5] = (x[:, :, 3:5] > 0.5).float()  # saturated primaries and secondaries
    x[:, 1, 5:7] = x[:, 0, 5:7]  # r == g
    x[:, 2, 7:8] = x[:, 1, 7:8]  # g == b
    x[:, :, 8:10] = (x[:, :, 8:10] * 4).round() / 4
    x[:, :, 10, :6], x[:, :, 10, 6:] = 0.0, 1.0
    return x


def test_closed_form_hue_matches_torchvision_incl_grey_saturated_and_tied_pixels():
    g = torch.Generator().manual_seed(7)
    x = _hard_images(40, g)
    edges = torch.tensor([-0.5, -0.25, -1e-3, 0.0, 1e-3, 1 / 6, 1 / 3, 0.5])
    shifts = torch.cat([edges, torch.rand(32, generator=g) - 0.5])
    ours = C.adjust_hue(x, shifts)
    for k in range(x.shape[0]):
        torch.testing.assert_close(ours[k], TF.adjust_hue(x[k], float(shifts[k])), atol=ATOL, rtol=0)
    grey = x[:, :, :3]
    assert torch.equal(ours[:, :, :3], grey)  # grey stays exactly grey (chroma 0)


def test_hue_rotation_by_a_third_turn_permutes_the_channels():
    # +1/3 turn maps R → G → B → R: the closed form gives (b, r, g) up to rounding
    x = torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(C.adjust_hue(x, torch.full((4,), 1 / 3)), x[:, [2, 0, 1]], atol=ATOL, rtol=0)


def test_blend_coefficients_give_each_op_and_the_identity_exactly():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(6, 3, 10, 10, generator=g)
    f = torch.rand(6, generator=g) * 1.2 + 0.3
    col = f.view(-1, 1, 1, 1)
    zero, one = torch.zeros_like(col), torch.ones_like(col)
    torch.testing.assert_close(C.blend(x, col, zero, zero), C.adjust_brightness(x, f), atol=1e-6, rtol=0)
    torch.testing.assert_close(C.blend(x, col, 1 - col, zero), C.adjust_contrast(x, f), atol=1e-6, rtol=0)
    torch.testing.assert_close(C.blend(x, col, zero, 1 - col), C.adjust_saturation(x, f), atol=1e-6, rtol=0)
    assert torch.equal(C.blend(x, one, zero, zero), x)


@pytest.mark.parametrize("sync_free", [True, False])
def test_color_jitter_equals_the_sequential_ops_for_every_order(sync_free):
    """All 24 orders of (brightness, contrast, saturation, hue), jitter on and off per
    image, against torchvision's ops applied one after the other."""
    g = torch.Generator().manual_seed(11)
    n = 8
    for perm in itertools.permutations(range(4)):
        x = _hard_images(n, g)
        factors = torch.cat([torch.rand(n, 3, generator=g) * 0.8 + 0.6, torch.rand(n, 1, generator=g) - 0.5], 1)
        apply = torch.arange(n) % 4 != 0
        ours = C.color_jitter(x, factors, torch.tensor(perm).expand(n, 4), apply, sync_free=sync_free)
        for k in range(n):
            expected = x[k]
            for op in perm if apply[k] else ():
                expected = TV_OPS[op](expected, float(factors[k, op]))
            torch.testing.assert_close(ours[k], expected, atol=ATOL, rtol=0, msg=f"order {perm}, image {k}")
        assert torch.equal(ours[~apply], x[~apply])  # not applied: untouched


def test_jitter_plan_codes_and_coefficients():
    factors = torch.tensor([[0.7, 1.2, 0.9, 0.05], [1.1, 0.8, 1.3, -0.2]])
    order = torch.tensor([[3, 0, 2, 1], [1, 2, 0, 3]])
    code, coef = C.jitter_plan(factors, order, torch.tensor([True, False]))
    assert code.tolist() == [[3, 0, 2, 1], [C.NO_OP] * 4]
    assert coef.shape == (4, 2, 7, 1, 1)
    first = coef[:, 0, :, 0, 0]  # image 0: hue, brightness, saturation, contrast
    expected = [[1, 0, 0, 1], [0.7, 0, 0, 0], [0.9, 0, 0.1, 0], [1.2, -0.2, 0, 0]]
    torch.testing.assert_close(first[:, :4], torch.tensor(expected), atol=1e-6, rtol=0)
    torch.testing.assert_close(first[0, 4:], torch.tensor([5.3, 3.3, 1.3]), atol=1e-6, rtol=0)
    assert torch.equal(coef[:, 1, :4, 0, 0], torch.tensor([[1.0, 0, 0, 0]] * 4))  # identity everywhere
