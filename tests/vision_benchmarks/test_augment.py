"""Batched augmentations against torchvision: ops for fixed parameters, samplers by
distribution, and the per-chunk sharing of the equivariance views.

Tolerances: float ops agree with ``torchvision.transforms.v2.functional`` to 1e-5
(absolute, images in [0, 1]); on uint8 input the resized crop is within one uint8 level
of torchvision's uint8 kernel (which rounds its output)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats
from torchvision import transforms as T
from torchvision.transforms.v2 import functional as TF

from vision_benchmarks import augment as A

ATOL = 1e-5


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def images(gen):
    return torch.rand(6, 3, 20, 24, generator=gen)


def _per_image(ours, reference, images, values):
    for k in range(images.shape[0]):
        torch.testing.assert_close(ours[k], reference(images[k], values[k]), atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", ["brightness", "contrast", "saturation"])
def test_blend_ops_match_torchvision(name, images, gen):
    factors = torch.rand(images.shape[0], generator=gen) * 1.2 + 0.4
    ours = getattr(A, f"adjust_{name}")(images, factors)
    reference = getattr(TF, f"adjust_{name}")
    _per_image(ours, lambda x, f: reference(x, float(f)), images, factors)


def test_hue_matches_torchvision_over_the_whole_range(images):
    shifts = torch.tensor([-0.5, -0.1, -0.03, 0.0, 0.07, 0.5])
    _per_image(A.adjust_hue(images, shifts), lambda x, h: TF.adjust_hue(x, float(h)), images, shifts)


def test_hue_keeps_gray_pixels_gray(gen):
    gray = torch.rand(3, 1, 8, 8, generator=gen).expand(-1, 3, -1, -1)
    torch.testing.assert_close(A.adjust_hue(gray, torch.tensor([0.1, -0.2, 0.5])), gray, atol=ATOL, rtol=0)


def test_grayscale_and_flip_match_torchvision(images, gen):
    mask = torch.tensor([True, False, True, True, False, False])
    gray = A.random_grayscale(images, mask)
    flipped = A.hflip(images, mask)
    for k in range(images.shape[0]):
        expected = TF.rgb_to_grayscale(images[k], num_output_channels=3) if mask[k] else images[k]
        torch.testing.assert_close(gray[k], expected, atol=ATOL, rtol=0)
        torch.testing.assert_close(flipped[k], TF.horizontal_flip(images[k]) if mask[k] else images[k])


def test_gaussian_blur_matches_torchvision_per_sigma(images):
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0, 0.8])
    for kernel in (3, 5):
        ours = A.gaussian_blur(images, sigma, kernel)
        _per_image(ours, lambda x, s: TF.gaussian_blur(x, [kernel, kernel], [float(s)] * 2), images, sigma)


def _cv2_gaussian_blur_reference(image_hwc, ksize: int, sigma: float):
    """``cv2.GaussianBlur(image, (k, k), sigma)`` as OpenCV documents it, in float64 numpy
    (no cv2 needed): ``getGaussianKernel`` G_i = α·exp(−(i − (k−1)/2)² / 2σ²) with Σ G_i = 1,
    sigmaY = sigmaX, separable, ``BORDER_REFLECT_101`` (gfedcb|abcdefgh|gfedcba), which is
    numpy's ``reflect``."""
    import numpy as np

    offsets = np.arange(ksize) - (ksize - 1) / 2
    g = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    g /= g.sum()
    h, w, _ = image_hwc.shape
    pad = ksize // 2
    x = np.pad(image_hwc.astype(np.float64), ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
    rows = sum(g[j] * x[:, j:j + w] for j in range(ksize))
    return sum(g[j] * rows[j:j + h] for j in range(ksize))


def test_gaussian_blur_equals_the_release_cv2_blur_in_float(images):
    """The release blurs with cv2.GaussianBlur(img, (3, 3), σ) on uint8 numpy images; on
    float images that filter is the documented one above. (cv2's uint8 path quantises the
    kernel to fixed point and rounds its output, a difference this test cannot see.)"""
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0, 0.8])
    for kernel in (3, 5):
        ours = A.gaussian_blur(images, sigma, kernel)
        for k in range(images.shape[0]):
            reference = _cv2_gaussian_blur_reference(images[k].permute(1, 2, 0).numpy(), kernel, float(sigma[k]))
            torch.testing.assert_close(ours[k].permute(1, 2, 0).double(), torch.from_numpy(reference),
                                       atol=1e-6, rtol=0)


def test_color_jitter_sync_free_path_equals_indexed_path(gen):
    cfg = A.AugmentConfig()
    p = A.sample_params(16, 8, 8, cfg, gen)
    x = torch.rand(16, 3, 8, 8, generator=gen)
    torch.testing.assert_close(
        A.color_jitter(x, p.factors, p.order, p.jitter, sync_free=True),
        A.color_jitter(x, p.factors, p.order, p.jitter, sync_free=False),
    )


def test_pipeline_equals_torchvision_ops_composed_in_release_order(gen):
    """apply_params == RRC → flip → jitter (per-sample order) → grayscale → blur → normalise."""
    cfg = A.AugmentConfig()
    x = torch.rand(10, 3, 32, 32, generator=gen)
    p = A.sample_params(10, 32, 32, cfg, gen)
    p.jitter[:] = True  # exercise every op
    ours = A.apply_params(x, p, cfg)
    ops = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for k in range(10):
        y = TF.resized_crop(x[k], *p.crop[k].tolist(), [32, 32], antialias=True)
        y = TF.horizontal_flip(y) if p.flip[k] else y
        for op_index in p.order[k].tolist():
            y = ops[op_index](y, float(p.factors[k, op_index]))
        y = TF.rgb_to_grayscale(y, num_output_channels=3) if p.grayscale[k] else y
        y = TF.gaussian_blur(y, [3, 3], [float(p.sigma[k])] * 2) if p.blur[k] else y
        y = TF.normalize(y, list(cfg.mean), list(cfg.std))
        torch.testing.assert_close(ours[k], y, atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- samplers


def _torchvision_crops(n, h, w, seed):
    torch.manual_seed(seed)
    img = torch.zeros(3, h, w)
    return torch.tensor([T.RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(n)])


@pytest.mark.parametrize("shape", [(32, 32), (96, 96)])
def test_crop_sampler_matches_torchvision_distribution(shape):
    """Two-sample KS tests on crop area, aspect and relative position (n = 3000 each)."""
    h, w = shape
    n = 3000
    ours = A.sample_crops(n, h, w, (0.08, 1.0), (3 / 4, 4 / 3), torch.Generator().manual_seed(0))
    ref = _torchvision_crops(n, h, w, seed=1)
    for name, fn in {
        "area": lambda b: (b[:, 2] * b[:, 3]).double(),
        "aspect": lambda b: b[:, 3].double() / b[:, 2].double(),
        "top": lambda b: (b[:, 0].double() + 0.5) / (h - b[:, 2] + 1).double(),
    }.items():
        p = stats.ks_2samp(fn(ours).numpy(), fn(ref).numpy()).pvalue
        assert p > 1e-3, f"{name}: KS p={p:.2e}"
    assert (ours[:, 0] + ours[:, 2] <= h).all() and (ours[:, 1] + ours[:, 3] <= w).all()
    assert (ours >= 0).all() and (ours[:, 2:] > 0).all()


def test_crop_sampler_falls_back_to_the_central_crop_like_torchvision():
    # scale (1, 1) with a ratio range excluding the square: no trial fits a 10x10 image
    ours = A.sample_crops(5, 10, 10, (1.0, 1.0), (2.0, 3.0), torch.Generator().manual_seed(0))
    expected = T.RandomResizedCrop.get_params(torch.zeros(3, 10, 10), [1.0, 1.0], [2.0, 3.0])
    assert ours.tolist() == [list(expected)] * 5


def test_bernoulli_rates_match_the_configured_probabilities():
    n = 20000
    cfg = A.AugmentConfig()
    p = A.sample_params(n, 32, 32, cfg, torch.Generator().manual_seed(0))
    for name, rate in (("flip", cfg.flip_p), ("jitter", cfg.jitter_p), ("grayscale", cfg.grayscale_p),
                       ("blur", cfg.blur_p)):
        observed = getattr(p, name).float().mean().item()
        assert abs(observed - rate) < 4 * math.sqrt(rate * (1 - rate) / n), (name, observed)


def test_jitter_factors_sigma_and_order_have_torchvisions_distributions():
    n = 24000
    cfg = A.AugmentConfig()
    p = A.sample_params(n, 32, 32, cfg, torch.Generator().manual_seed(0))
    for col, (lo, hi) in enumerate([(0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1)]):
        assert stats.kstest(p.factors[:, col].numpy(), "uniform", args=(lo, hi - lo)).pvalue > 1e-3
    assert stats.kstest(p.sigma.numpy(), "uniform", args=(0.1, 1.9)).pvalue > 1e-3
    assert (p.order.sort(dim=1).values == torch.arange(4)).all()  # permutations
    codes = (p.order * torch.tensor([64, 16, 4, 1])).sum(1)
    counts = torch.bincount(codes, minlength=256)[torch.bincount(codes, minlength=256) > 0]
    assert counts.numel() == 24 and stats.chisquare(counts.numpy()).pvalue > 1e-3


# --------------------------------------------------------------------------- chunk sharing


def _rows(params, index):
    return [getattr(params, f)[index] for f in ("crop", "flip", "jitter", "factors", "order", "grayscale", "blur", "sigma")]


def _same(params, i, j):
    return all(torch.equal(a, b) for a, b in zip(_rows(params, i), _rows(params, j)))


def test_per_chunk_views_share_parameters_within_a_chunk_and_not_across(gen):
    aug = A.BatchAugment(A.AugmentConfig(), "per-chunk")
    p1, p2 = aug.chunk_params(24, 32, 32, n_split=4, generator=gen)
    for params in (p1, p2):
        for chunk in range(4):
            assert all(_same(params, 6 * chunk, 6 * chunk + r) for r in range(6))
        assert not _same(params, 0, 6) and not _same(params, 6, 12)
    assert not _same(p1, 0, 0) or not torch.equal(p1.sigma, p2.sigma)  # the pair differs


def test_release_mode_shares_one_pair_across_all_chunks(gen):
    aug = A.BatchAugment(A.AugmentConfig(), "release")
    p1, p2 = aug.chunk_params(24, 32, 32, n_split=4, generator=gen)
    assert all(_same(p1, 0, i) and _same(p2, 0, i) for i in range(24))
    assert not torch.equal(p1.sigma, p2.sigma)


def test_chunk_views_transform_identical_images_identically(gen):
    base = torch.randint(0, 256, (1, 3, 16, 16), generator=gen, dtype=torch.uint8)
    x = base.expand(8, -1, -1, -1).contiguous()
    aug = A.BatchAugment(A.AugmentConfig(size=16), "per-chunk")
    e1, e2 = aug.chunk_views(x, n_split=2, generator=gen)
    for views in (e1, e2):
        torch.testing.assert_close(views[:4], views[:1].expand(4, -1, -1, -1))
        torch.testing.assert_close(views[4:], views[4:5].expand(4, -1, -1, -1))
        assert not torch.allclose(views[0], views[4])
    independent = aug.views(x, gen)
    assert not torch.allclose(independent[0], independent[1])


def test_chunk_views_reject_a_split_that_does_not_divide_the_batch(gen):
    with pytest.raises(ValueError, match="must divide"):
        A.BatchAugment(A.AugmentConfig()).chunk_views(torch.zeros(10, 3, 8, 8), n_split=3, generator=gen)


def test_views_are_normalised_float_of_the_configured_size(gen):
    cfg = A.AugmentConfig(size=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = torch.full((4, 3, 40, 40), 128, dtype=torch.uint8)
    v = A.BatchAugment(cfg).views(x, gen)
    assert v.shape == (4, 3, 16, 16) and v.dtype == torch.float32
    assert v.abs().max() <= (1 - 0.5) / 0.25 + 1e-5  # values come from [0, 1]
    e = A.BatchAugment(cfg).eval_view(x)
    torch.testing.assert_close(e, torch.full_like(e, (128 / 255 - 0.5) / 0.25))


@pytest.mark.parametrize("bad", [dict(blur_kernel=4), dict(scale=(0.5, 0.1)), dict(jitter=(0.4, 0.4, 0.4, 0.7))])
def test_invalid_settings_are_rejected(bad):
    with pytest.raises(ValueError):
        A.AugmentConfig(**bad)


def test_unknown_equivariance_view_mode_is_rejected():
    with pytest.raises(ValueError, match="equiv_views"):
        A.BatchAugment(A.AugmentConfig(), "per-sample")


@pytest.mark.parametrize("settings", [{}, {"blur_impl": "cv2"}, {"equiv_crop": False}])
@pytest.mark.parametrize("equiv_views", ["per-chunk", "release"])
def test_step_views_in_one_pass_equal_the_separate_calls(settings, equiv_views):
    # step_views draws the rows of views, views, chunk_views in that order in ONE
    # torch.rand call and applies them in one batched pass (or two when the settings of
    # the two kinds differ). A CPU generator fills a tensor serially, so one call of
    # 2n + 2·sets rows equals the three calls here (a CUDA generator need not: the
    # properties that matter on any device are tested below).
    aug = A.BatchAugment(A.AugmentConfig(**settings), equiv_views=equiv_views)
    x = torch.randint(0, 256, (16, 3, 20, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(5)
    separate = [aug.views(x, g), aug.views(x, g), *aug.chunk_views(x[:8], 4, g)]
    g = torch.Generator().manual_seed(5)
    together = aug.step_views(x, g, n_split=4, equiv_images=x[:8])
    assert [t.shape for t in together] == [t.shape for t in separate]
    for a, b in zip(together, separate):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    g = torch.Generator().manual_seed(5)
    simclr = aug.step_views(x, g)
    assert len(simclr) == 2
    torch.testing.assert_close(simclr[0], separate[0], rtol=0, atol=1e-5)


def _count_passes(aug, monkeypatch):
    calls = []

    def counting(images, params, config, **kwargs):
        calls.append(images.shape[0])
        return A.apply_params(images, params, config, **kwargs)

    monkeypatch.setattr(aug, "_apply", counting)
    return calls


def test_step_views_same_seed_same_views_in_one_rng_call_and_one_pass(monkeypatch):
    aug = A.BatchAugment(A.AugmentConfig(size=16))
    x = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    passes = _count_passes(aug, monkeypatch)
    first = aug.step_views(x, torch.Generator().manual_seed(4), n_split=4)
    assert passes == [64]  # 2 invariance + 2 equivariance views of 16 images, one pass
    again = aug.step_views(x, torch.Generator().manual_seed(4), n_split=4)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    other = aug.step_views(x, torch.Generator().manual_seed(5), n_split=4)
    assert not torch.equal(first[0], other[0])
    with torch.profiler.profile() as prof:
        aug.step_views(x, torch.Generator().manual_seed(4), n_split=4)
    assert sum(e.name == "aten::rand" for e in prof.events()) == 1  # every parameter from one RNG call


@pytest.mark.parametrize("equiv_views", ["per-chunk", "release"])
def test_step_views_share_one_set_per_chunk_and_keep_the_views_independent(equiv_views):
    aug = A.BatchAugment(A.AugmentConfig(size=16), equiv_views=equiv_views)
    base = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    x = base.expand(16, -1, -1, -1).contiguous()  # identical images: equal views iff equal parameters
    v1, v2, e1, e2 = aug.step_views(x, torch.Generator().manual_seed(2), n_split=4)
    for e in (e1, e2):
        for chunk in range(4):
            assert all(torch.equal(e[4 * chunk], e[4 * chunk + r]) for r in range(4))
        chunks_equal = [torch.equal(e[0], e[4 * c]) for c in range(1, 4)]
        assert all(chunks_equal) if equiv_views == "release" else not any(chunks_equal)
    assert not torch.equal(e1[0], e2[0])  # the pair differs
    for v in (v1, v2):  # invariance views: a set per image
        assert sum(torch.equal(v[0], v[i]) for i in range(1, 16)) <= 1
    assert not any(torch.equal(v1[i], v2[i]) for i in range(16))  # the two views are independent


def test_equal_draws_give_equal_parameter_sets():
    u = A.uniform_draws(3, torch.Generator().manual_seed(0))
    p = A.params_from_draws(u[torch.tensor([0, 1, 1, 2, 0])], 24, 20, A.AugmentConfig())
    assert _same(p, 0, 4) and _same(p, 1, 2) and not _same(p, 0, 1) and not _same(p, 2, 3)
    assert A.shared_rows(3, 2, 2, "cpu").tolist() == [0, 1, 2, 3, 3, 4, 4, 5, 5, 6, 6]


def test_sync_free_step_dispatches_few_tensor_ops(monkeypatch):
    """On a GPU the augmentation is bound by ~10 µs of host time per dispatched op: all
    four views of a CARE step take ~220 top-level ops on the CUDA (sync-free) path."""
    aug = A.BatchAugment(A.AugmentConfig())
    monkeypatch.setattr(aug, "_apply", lambda *a, **k: A.apply_params(*a, sync_free=True, **k))
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    aug.step_views(x, g, n_split=4)
    with torch.profiler.profile() as prof:
        aug.step_views(x, g, n_split=4)
    ops = sum(e.cpu_parent is None and e.name.startswith("aten::") for e in prof.events())
    assert ops < 300, ops


def test_compiled_augmentation_gives_the_same_views(monkeypatch):
    # BatchAugment.compile routes every pass through torch.compile (backend "eager" here:
    # the wiring, fast on CPU; Inductor's kernels are timed by bench_vision_step.py)
    x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    plain, compiled = A.BatchAugment(A.AugmentConfig()), A.BatchAugment(A.AugmentConfig())
    compiled.compile(backend="eager")
    assert compiled._apply is not A.apply_params
    for a, b in zip(plain.step_views(x, torch.Generator().manual_seed(2), n_split=4),
                    compiled.step_views(x, torch.Generator().manual_seed(2), n_split=4)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
