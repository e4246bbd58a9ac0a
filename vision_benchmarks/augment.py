"""The SimCLR augmentation pipeline of the CARE release, as batched tensor operations.

The release (``cifar10_cifar100_stl10/dataset.py``) augments one PIL image at a time in
DataLoader workers::

    RandomResizedCrop(32, scale=(0.08, 1), ratio=(3/4, 4/3))   # bilinear, antialiased
    RandomHorizontalFlip(0.5)
    RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)       # the 4 ops in random order
    RandomGrayscale(0.2)
    GaussianBlur(kernel 3, sigma ~ U[0.1, 2.0]) with p=0.5
    Normalize(dataset mean, dataset std)

Here a whole batch ``(n, 3, H, W)`` (uint8 or float in [0, 1], on any device) is
augmented at once. Parameters are drawn as tensors, one row per parameter set, from one
``torch.rand`` call (:func:`uniform_draws` → :func:`params_from_draws`), and
:func:`apply_params` applies row ``k`` to image ``k``. Sharing one set over a chunk of
images (CARE's equivariance views) is repeating its row of draws (:func:`shared_rows`).
On a GPU the pass is bound by kernel launches, so the ops are written to dispatch few
tensor ops (about 220 for all four views of a CARE step); the crop, resize, flip and
normalisation are in :mod:`vision_benchmarks.geometric`, the colour ops in
:mod:`vision_benchmarks.color`.

Numerics: every op works in float32 on [0, 1] with no intermediate rounding to uint8.
For fixed parameters each op equals ``torchvision.transforms.v2.functional`` on float
images to ~1e-5 (tests/vision_benchmarks/test_augment.py), also under autocast (switched
off inside); the release's PIL path rounds to uint8 after every op, so it differs from
both by a few uint8 levels. ``blur_impl = "cv2"`` reproduces the release's
``cv2.GaussianBlur`` bit for bit instead (:mod:`vision_benchmarks.blur`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from vision_benchmarks.blur import BLUR_IMPLS, gaussian_blur, gaussian_kernels  # noqa: F401  (re-exported)
from vision_benchmarks.color import (  # noqa: F401  (re-exported)
    _JITTER_OPS, GRAY_WEIGHTS, adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation, color_jitter,
    grayscale, random_grayscale,
)
from vision_benchmarks.geometric import (  # noqa: F401  (re-exported)
    _pixel_centres, _resample_matrix, hflip, normalize, resize, resized_crop, to_float,
)
from protein_care.device_constants import cached_tensor, constant

EQUIV_VIEW_MODES = ("per-chunk", "release")


@dataclass(frozen=True)
class AugmentConfig:
    """Settings of the pipeline; the defaults are the release's for CIFAR/STL10."""

    size: int = 32
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_kernel: int = 3
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_p: float = 0.5
    mean: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
    std: tuple[float, float, float] = (0.2023, 0.1994, 0.2010)
    blur_impl: str = "torchvision"  # invariance views' blur: torchvision | cv2 (vision_benchmarks.blur)
    equiv_crop: bool = True  # equivariance views include the crop (false: the release's ImageNet100)

    def __post_init__(self):
        if self.blur_impl not in BLUR_IMPLS:
            raise ValueError(f"blur_impl must be one of {BLUR_IMPLS}, got {self.blur_impl!r}")
        if self.blur_kernel % 2 != 1 or self.blur_kernel < 1:
            raise ValueError(f"blur_kernel must be odd and positive, got {self.blur_kernel}")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < lo <= hi, got {self.ratio}")
        if not 0 <= self.jitter[3] <= 0.5:
            raise ValueError(f"hue jitter must lie in [0, 0.5], got {self.jitter[3]}")


@dataclass
class AugmentParams:
    """One row per parameter set (all tensors share the first dimension m).

    crop: ``(m, 4)`` int64 ``(top, left, height, width)`` in input pixels.
    flip, jitter, grayscale, blur: ``(m,)`` bool, whether each op is applied.
    factors: ``(m, 4)`` brightness, contrast, saturation, hue factors.
    order: ``(m, 4)`` int64, a permutation of 0..3 (0 b, 1 c, 2 s, 3 h) per row.
    sigma: ``(m,)`` blur standard deviation in pixels.
    """

    crop: Tensor
    flip: Tensor
    jitter: Tensor
    factors: Tensor
    order: Tensor
    grayscale: Tensor
    blur: Tensor
    sigma: Tensor

    def __len__(self) -> int:
        return self.crop.shape[0]

    def _map(self, fn) -> "AugmentParams":
        return AugmentParams(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def repeat_interleave(self, repeats: int) -> "AugmentParams":
        """Each row repeated ``repeats`` times in place: one set shared by a chunk."""
        return self._map(lambda t: t.repeat_interleave(repeats, dim=0))

    def __getitem__(self, index) -> "AugmentParams":
        return self._map(lambda t: t[index])


# --------------------------------------------------------------------------- sampling

CROP_TRIALS = 10
# Columns of the uniform draws behind one parameter set (see params_from_draws).
_AREA, _LOG_RATIO, _FACTORS, _SIGMA = slice(0, 10), slice(10, 20), slice(20, 24), 24
_AFFINE, _POSITION, _BERNOULLI, _ORDER = 25, slice(25, 27), slice(27, 31), slice(31, 35)
N_DRAWS = 35


def uniform_draws(m: int, generator=None, device=None) -> Tensor:
    """``(m, N_DRAWS)`` float64 U[0, 1): every random number of ``m`` parameter sets,
    drawn in one call (turned into parameters by :func:`params_from_draws`)."""
    return torch.rand(m, N_DRAWS, generator=generator, device=device, dtype=torch.float64)


def _crop_boxes(target: Tensor, log_ratio: Tensor, position: Tensor, height: int, width: int, ratio) -> Tensor:
    """``(m, 4)`` boxes ``(top, left, h, w)`` from ``(m, T)`` trial areas and log-aspects
    and ``(m, 2)`` uniforms for the position, as ``RandomResizedCrop.get_params``:
    w = round(√(A·r)), h = round(√(A/r)) (half to even, as Python's round); the first
    trial with 0 < h ≤ H and 0 < w ≤ W wins, placed at top = ⌊u·(H − h + 1)⌋,
    left = ⌊u'·(W − w + 1)⌋ (uniform integers); else the central crop clipped to the ratio
    range."""
    device = target.device
    aspect = log_ratio.exp()
    hw = torch.stack([target / aspect, target * aspect], dim=1).sqrt_().round_().long()  # (m, 2, T): h, w
    fits = ((hw > 0) & (hw <= constant(((height,), (width,)), device, torch.int64))).all(dim=1)
    first = fits.byte().argmax(dim=1, keepdim=True)  # the first fitting trial
    found = fits.any(dim=1, keepdim=True)
    hw = torch.take_along_dim(hw, first.unsqueeze(1), dim=2).squeeze(2)  # (m, 2)
    in_ratio = width / height  # fallback: central crop
    if in_ratio < min(ratio):
        fh, fw = int(round(width / min(ratio))), width
    elif in_ratio > max(ratio):
        fh, fw = height, int(round(height * max(ratio)))
    else:
        fh, fw = height, width
    hw = torch.where(found, hw, constant((fh, fw), device, torch.int64))
    room = constant((height + 1, width + 1), device, torch.int64) - hw
    corner = torch.where(found, (position * room).floor_().long(),
                         constant(((height - fh) // 2, (width - fw) // 2), device, torch.int64))
    return torch.cat([corner, hw], dim=1)


def sample_crops(m: int, height: int, width: int, scale, ratio, generator=None, device=None) -> Tensor:
    """``m`` RandomResizedCrop boxes ``(top, left, h, w)``, distributed exactly as
    ``torchvision.transforms.RandomResizedCrop.get_params``: up to 10 trials of
    area ~ U(scale)·HW and log-aspect ~ U(log ratio) (see :func:`_crop_boxes`)."""
    u = torch.rand(m, 2 * CROP_TRIALS + 2, generator=generator, device=device, dtype=torch.float64)
    area, log_lo, log_hi = height * width, math.log(ratio[0]), math.log(ratio[1])
    target = u[:, :CROP_TRIALS] * (area * (scale[1] - scale[0])) + area * scale[0]
    log_ratio = u[:, CROP_TRIALS:2 * CROP_TRIALS] * (log_hi - log_lo) + log_lo
    return _crop_boxes(target, log_ratio, u[:, 2 * CROP_TRIALS:], height, width, ratio)


def _affine_ranges(height: int, width: int, config: AugmentConfig) -> tuple[tuple, tuple]:
    """``(lo, hi − lo)`` of the uniform columns 0–24 of :func:`params_from_draws`."""
    b, c, s, hue = config.jitter
    area = height * width
    bounds = ([(area * config.scale[0], area * config.scale[1])] * CROP_TRIALS
              + [tuple(math.log(r) for r in config.ratio)] * CROP_TRIALS
              + [(max(0.0, 1 - b), 1 + b), (max(0.0, 1 - c), 1 + c), (max(0.0, 1 - s), 1 + s), (-hue, hue),
                 tuple(config.blur_sigma)])
    return tuple(float(lo) for lo, _ in bounds), tuple(float(hi - lo) for lo, hi in bounds)


def params_from_draws(u: Tensor, height: int, width: int, config: AugmentConfig) -> AugmentParams:
    """Parameter sets for ``height × width`` inputs from :func:`uniform_draws`, row k from
    ``u[k]`` (equal rows give equal sets), with torchvision's distributions:

    - columns 0–24 map affinely, lo + u·(hi − lo), in one op: the crop's 10 trial areas
      U(scale)·HW and log-aspects U(log ratio) (:func:`_crop_boxes`, which also takes
      columns 25–26 for the position), the jitter factors U[max(0, 1−x), 1+x] for
      brightness, contrast, saturation and U[−x, x] for hue, and σ ~ U[σ_min, σ_max];
    - columns 27–30: Bernoulli(p) = (u < p) for flip, jitter, grayscale, blur;
    - columns 31–34: the jitter order, the argsort of 4 uniforms (a uniform permutation).
    """
    device = u.device
    lo, span = _affine_ranges(height, width, config)
    v = torch.addcmul(constant(lo, device, torch.float64), u[:, :_AFFINE], constant(span, device, torch.float64))
    probabilities = (config.flip_p, config.jitter_p, config.grayscale_p, config.blur_p)
    flip, jitter, gray, blur = (u[:, _BERNOULLI] < constant(probabilities, device, torch.float64)).unbind(1)
    return AugmentParams(
        crop=_crop_boxes(v[:, _AREA], v[:, _LOG_RATIO], u[:, _POSITION], height, width, config.ratio),
        flip=flip,
        jitter=jitter,
        factors=v[:, _FACTORS].float(),
        order=u[:, _ORDER].argsort(dim=1),
        grayscale=gray,
        blur=blur,
        sigma=v[:, _SIGMA].float(),
    )


def sample_params(
    m: int, height: int, width: int, config: AugmentConfig, generator=None, device=None
) -> AugmentParams:
    """``m`` independent parameter sets of the pipeline for ``height × width`` inputs
    (:func:`params_from_draws` of one :func:`uniform_draws` call)."""
    if device is None and generator is not None:
        device = generator.device
    return params_from_draws(uniform_draws(m, generator, device), height, width, config)


def shared_rows(independent: int, sets: int, repeats: int, device) -> Tensor:
    """Row index ``[0, …, independent−1]`` then each of the rows ``independent + j``,
    j < 2·sets, ``repeats`` times in a row: indexing draws with it gives ``independent``
    rows of their own, then chunks of ``repeats`` equal rows (cached per device)."""

    def build(dev):
        shared = torch.arange(2 * sets, device=dev).repeat_interleave(repeats) + independent
        return torch.cat([torch.arange(independent, device=dev), shared])

    return cached_tensor(("shared_rows", independent, sets, repeats), device, build)


# --------------------------------------------------------------------------- pipeline


def apply_params(images: Tensor, params: AugmentParams, config: AugmentConfig, sync_free: bool | None = None,
                 *, crop: bool = True, blur_impl: str | None = None) -> Tensor:
    """The release pipeline with parameter row k applied to image k → normalised float.
    ``crop=False``: the images are already crops; they are only resized to ``size`` when
    they have another size (``params.crop`` unused). ``blur_impl`` defaults to
    ``config.blur_impl``. Runs in float32 even under autocast."""
    if len(params) != images.shape[0]:
        raise ValueError(f"need one parameter row per image: {len(params)} rows for {images.shape[0]} images")
    with torch.autocast(images.device.type, enabled=False):
        x = resized_crop(images, params.crop, config.size) if crop else resize(images, config.size)
        x = hflip(x, params.flip)
        x = color_jitter(x, params.factors, params.order, params.jitter, sync_free)
        x = random_grayscale(x, params.grayscale)
        x = gaussian_blur(x, params.sigma, config.blur_kernel, params.blur, blur_impl or config.blur_impl)
        return normalize(x, config.mean, config.std)


class BatchAugment:
    """The pipeline bound to a config: invariance views (independent parameters per
    image) and equivariance views (one parameter pair per chunk).

    Example::

        aug = BatchAugment(AugmentConfig())
        v1, v2 = aug.views(x, g), aug.views(x, g)            # SimCLR views
        e1, e2 = aug.chunk_views(x, n_split=16, generator=g)  # CARE views
        v1, v2, e1, e2 = aug.step_views(x, g, n_split=16)     # all four in one pass
    """

    def __init__(self, config: AugmentConfig, equiv_views: str = "per-chunk"):
        if equiv_views not in EQUIV_VIEW_MODES:
            raise ValueError(f"equiv_views must be one of {EQUIV_VIEW_MODES}, got {equiv_views!r}")
        self.config = config
        self.equiv_views = equiv_views
        self._apply = apply_params

    def compile(self, **kwargs) -> None:
        """Apply the pipeline through ``torch.compile`` (fixed shapes by default: one
        compilation per batch shape). On a GPU this fuses the few hundred small kernels
        of a pass, whose launches, not arithmetic, bound the augmentation of small images.
        The views are the same up to float rounding."""
        self._apply = torch.compile(apply_params, **{"dynamic": False, **kwargs})

    def views(self, images: Tensor, generator: torch.Generator | None = None, *, crop: bool = True) -> Tensor:
        """One independently augmented view per image (``crop=False``: the images are
        already random resized crops, as the ImageNet100 loader's workers make them)."""
        n, _, height, width = images.shape
        params = sample_params(n, height, width, self.config, generator, images.device)
        return self._apply(images, params, self.config, crop=crop)

    def _draws(self, independent: int, n: int, n_split: int, generator, device) -> Tensor:
        """Uniform draws (one RNG call) for ``independent`` rows of their own, then the
        two equivariance views of n images in ``n_split`` consecutive chunks:
        ``"per-chunk"``: chunk k has its own pair (ã1_k, ã2_k), as the paper describes;
        ``"release"``: every chunk shares one pair, as the authors' code does in fact
        (``vmap(process, randomness='same')`` over the chunks)."""
        if n % n_split:
            raise ValueError(f"n_split={n_split} must divide the batch size {n}")
        sets, repeats = (n_split, n // n_split) if self.equiv_views == "per-chunk" else (1, n)
        if device is None and generator is not None:
            device = generator.device
        u = uniform_draws(independent + 2 * sets, generator, device)
        return u[shared_rows(independent, sets, repeats, u.device)]

    def chunk_params(self, n: int, height: int, width: int, n_split: int, generator=None, device=None):
        """Parameter rows ``(p1, p2)`` for the two equivariance views of n images in
        ``n_split`` consecutive chunks (one pair per chunk, or one for all chunks in the
        ``"release"`` mode; see :meth:`_draws`)."""
        params = params_from_draws(self._draws(0, n, n_split, generator, device), height, width, self.config)
        return params[:n], params[n:]

    def chunk_views(self, images: Tensor, n_split: int, generator: torch.Generator | None = None):
        """``(ã1(x), ã2(x))`` with one augmentation pair per chunk (see :meth:`chunk_params`);
        without the crop when ``config.equiv_crop`` is false. The blur is torchvision's
        (the release blurs its equivariance views with ``transforms.GaussianBlur``)."""
        n, _, height, width = images.shape
        params = params_from_draws(self._draws(0, n, n_split, generator, images.device), height, width, self.config)
        return self._apply_together([images, images], params, **self._equiv_kwargs())

    def step_views(self, images: Tensor, generator: torch.Generator | None = None, *, n_split: int | None = None,
                   equiv_images: Tensor | None = None) -> list[Tensor]:
        """The views of one training step: two invariance views of ``images`` and, with
        ``n_split``, the two equivariance views of ``equiv_images`` (default: ``images``),
        distributed as ``views``, ``views``, ``chunk_views`` would make them.

        All parameters come from ONE RNG call (:meth:`_draws`) and are applied in ONE
        batched pass when the two kinds share their settings (crop and blur) and image
        shape: on a GPU the augmentation is bound by kernel launches, not arithmetic, so
        one pass over 4n images costs about what one over n does."""
        n, _, height, width = images.shape
        if n_split is None:
            params = sample_params(2 * n, height, width, self.config, generator, images.device)
            return list(self._apply_together([images, images], params, crop=True))
        eq = images if equiv_images is None else equiv_images
        draws = self._draws(2 * n, eq.shape[0], n_split, generator, images.device)
        inv_kw, eq_kw = {"crop": True, "blur_impl": self.config.blur_impl}, self._equiv_kwargs()
        if inv_kw == eq_kw and eq.shape[1:] == images.shape[1:]:
            params = params_from_draws(draws, height, width, self.config)
            return list(self._apply_together([images, images, eq, eq], params, **inv_kw))
        invariant = params_from_draws(draws[:2 * n], height, width, self.config)
        equivariant = params_from_draws(draws[2 * n:], eq.shape[2], eq.shape[3], self.config)
        return [*self._apply_together([images, images], invariant, **inv_kw),
                *self._apply_together([eq, eq], equivariant, **eq_kw)]

    def _equiv_kwargs(self) -> dict:
        return {"crop": self.config.equiv_crop, "blur_impl": "torchvision"}

    def _apply_together(self, images: list[Tensor], params: AugmentParams, **kwargs) -> tuple[Tensor, ...]:
        """``apply_params`` of the images stacked in order (``params``: one row per stacked
        image), computed as one batched pass, split back per element of ``images``."""
        out = self._apply(torch.cat(images), params, self.config, **kwargs)
        return out.split([x.shape[0] for x in images])

    def eval_view(self, images: Tensor) -> Tensor:
        """Evaluation transform: resize to ``size`` when needed (STL10 96 → 32, as the
        release's ``Resize(32)``), then normalise."""
        return normalize(resize(images, self.config.size), self.config.mean, self.config.std)
