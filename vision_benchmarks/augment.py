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
augmented at once. Parameters are drawn as tensors (:func:`sample_params`), one row per
parameter set, and :func:`apply_params` applies row ``k`` to image ``k``. Sharing one set
over a chunk of images (CARE's equivariance views) is ``params.repeat_interleave(c)``.

Numerics: every op works in float32 on [0, 1] with no intermediate rounding to uint8.
For fixed parameters each op equals ``torchvision.transforms.v2.functional`` on float
images to ~1e-5 (tests/vision_benchmarks/test_augment.py), also under autocast (switched
off inside); the release's PIL path rounds to uint8 after every op, so it differs from
both by a few uint8 levels. ``blur_impl = "cv2"`` reproduces the release's
``cv2.GaussianBlur`` bit for bit instead (:mod:`vision_benchmarks.blur`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from vision_benchmarks.blur import BLUR_IMPLS, gaussian_blur, gaussian_kernels  # noqa: F401  (re-exported)

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale
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

    @staticmethod
    def cat(parts: "list[AugmentParams]") -> "AugmentParams":
        """The rows of ``parts`` stacked in order."""
        return AugmentParams(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(AugmentParams)})


# --------------------------------------------------------------------------- sampling


def _uniform(m, lo, hi, generator, device, dtype=torch.float32) -> Tensor:
    return torch.rand(m, generator=generator, device=device, dtype=dtype) * (hi - lo) + lo


def sample_crops(m: int, height: int, width: int, scale, ratio, generator=None, device=None) -> Tensor:
    """``m`` RandomResizedCrop boxes ``(top, left, h, w)``, distributed exactly as
    ``torchvision.transforms.RandomResizedCrop.get_params``: up to 10 trials of
    area ~ U(scale)·HW and log-aspect ~ U(log ratio), w = round(√(A·r)), h = round(√(A/r));
    the first trial that fits wins, else the central crop clipped to the ratio range."""
    area = height * width
    log_lo, log_hi = torch.log(torch.tensor(ratio, dtype=torch.float64)).tolist()
    target = area * _uniform((m, 10), scale[0], scale[1], generator, device).double()
    aspect = torch.exp(_uniform((m, 10), log_lo, log_hi, generator, device).double())
    w = torch.round(torch.sqrt(target * aspect)).long()  # round half to even, as Python's round
    h = torch.round(torch.sqrt(target / aspect)).long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # first fitting trial
    found = fits.any(dim=1)
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    in_ratio = width / height  # fallback: central crop
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fw, fh = int(round(height * max(ratio))), height
    else:
        fw, fh = width, height
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    u = torch.rand(m, 2, generator=generator, device=device, dtype=torch.float64)
    top = torch.where(found, (u[:, 0] * (height - h + 1)).floor().long(), (height - h) // 2)
    left = torch.where(found, (u[:, 1] * (width - w + 1)).floor().long(), (width - w) // 2)
    return torch.stack([top, left, h, w], dim=1)


def sample_params(
    m: int, height: int, width: int, config: AugmentConfig, generator=None, device=None
) -> AugmentParams:
    """``m`` independent parameter sets of the pipeline for ``height × width`` inputs,
    with torchvision's distributions (crop as :func:`sample_crops`; Bernoulli(p) for each
    RandomApply / flip / grayscale; jitter factors U[max(0, 1−x), 1+x] and hue U[−x, x];
    a uniform random order of the four jitter ops; σ ~ U[σ_min, σ_max])."""
    if device is None and generator is not None:
        device = generator.device
    b, c, s, hue = config.jitter
    bern = lambda p: torch.rand(m, generator=generator, device=device) < p  # noqa: E731
    factors = torch.stack(
        [
            _uniform(m, max(0.0, 1 - b), 1 + b, generator, device),
            _uniform(m, max(0.0, 1 - c), 1 + c, generator, device),
            _uniform(m, max(0.0, 1 - s), 1 + s, generator, device),
            _uniform(m, -hue, hue, generator, device),
        ],
        dim=1,
    )
    order = torch.rand(m, 4, generator=generator, device=device).argsort(dim=1)  # uniform permutations
    return AugmentParams(
        crop=sample_crops(m, height, width, config.scale, config.ratio, generator, device),
        flip=bern(config.flip_p),
        jitter=bern(config.jitter_p),
        factors=factors,
        order=order,
        grayscale=bern(config.grayscale_p),
        blur=bern(config.blur_p),
        sigma=_uniform(m, config.blur_sigma[0], config.blur_sigma[1], generator, device),
    )


# --------------------------------------------------------------------------- ops


def to_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] → float32 [0, 1]; float images are returned as float32."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images.float()


def _resample_matrix(start: Tensor, length: Tensor, in_size: int, out_size: int) -> Tensor:
    """``(n, out_size, in_size)`` weights of torchvision's antialiased bilinear resize of
    the window [start, start + length) to ``out_size`` pixels (the triangle filter of
    ATen's ``_upsample_bilinear2d_aa``: support max(scale, 1), renormalised at the
    window's edges; for upsampling it equals plain bilinear with edge clamping)."""
    dtype = torch.float32
    scale = length.to(dtype) / out_size  # (n,)
    support = scale.clamp(min=1.0)
    out_pos = torch.arange(out_size, device=start.device, dtype=dtype) + 0.5
    centre = start.to(dtype)[:, None] + scale[:, None] * out_pos  # (n, out)
    in_pos = torch.arange(in_size, device=start.device, dtype=dtype) + 0.5  # pixel centres
    t = (in_pos[None, None, :] - centre[:, :, None]) / support[:, None, None]
    weight = (1 - t.abs()).clamp(min=0)
    inside = (in_pos[None, :] >= start[:, None]) & (in_pos[None, :] < (start + length)[:, None])
    weight = weight * inside[:, None, :]
    return weight / weight.sum(dim=2, keepdim=True)


def resized_crop(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Crop ``boxes[k] = (top, left, h, w)`` of image k and resize it to ``size × size``
    (bilinear, antialiased), all in one batched separable matmul:
    ``out_k = W_y,k · crop_k · W_x,kᵀ``. Equals ``v2.functional.resized_crop(...,
    antialias=True)`` on float images."""
    x = to_float(images)
    n, _, height, width = x.shape
    wy = _resample_matrix(boxes[:, 0], boxes[:, 2], height, size)  # (n, size, H)
    wx = _resample_matrix(boxes[:, 1], boxes[:, 3], width, size)  # (n, size, W)
    x = torch.matmul(x, wx.transpose(1, 2)[:, None])  # (n, C, H, size)
    return torch.matmul(wy[:, None], x)  # (n, C, size, size)


def resize(images: Tensor, size: int) -> Tensor:
    """The whole image resized to ``size × size`` (as :func:`resized_crop`)."""
    n, _, height, width = images.shape
    if (height, width) == (size, size):
        return to_float(images)
    box = torch.tensor([0, 0, height, width], device=images.device).expand(n, 4)
    return resized_crop(images, box, size)


def _per_sample(values: Tensor, x: Tensor) -> Tensor:
    return values.to(x.dtype).view(-1, 1, 1, 1)


def hflip(x: Tensor, mask: Tensor) -> Tensor:
    """Mirror left-right the images where ``mask`` is true."""
    return torch.where(mask.view(-1, 1, 1, 1), x.flip(-1), x)


def grayscale(x: Tensor) -> Tensor:
    """Luma ``(n, 1, H, W)`` with torchvision's weights (0.2989, 0.587, 0.114)."""
    r, g, b = x.unbind(dim=1)
    return (r * GRAY_WEIGHTS[0] + g * GRAY_WEIGHTS[1] + b * GRAY_WEIGHTS[2]).unsqueeze(1)


def _blend(x: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    f = _per_sample(factor, x)
    return (f * x + (1 - f) * other).clamp(0, 1)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """``clamp(f·x)``, one factor per image."""
    return _blend(x, torch.zeros_like(x), factor)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's mean luma: ``clamp(f·x + (1−f)·mean(gray(x)))``."""
    return _blend(x, grayscale(x).mean(dim=(1, 2, 3), keepdim=True), factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's luma: ``clamp(f·x + (1−f)·gray(x))``."""
    return _blend(x, grayscale(x), factor)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate the hue by ``shift`` turns (in [−0.5, 0.5]) through RGB → HSV → RGB,
    the same conversion torchvision (after PIL) uses."""
    r, g, b = x.unbind(dim=1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    gray = delta == 0
    sat = delta / torch.where(gray, torch.ones_like(maxc), maxc)
    safe = torch.where(gray, torch.ones_like(delta), delta)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(gray, torch.zeros_like(hue), hue)
    hue = (hue / 6.0 + 1.0).fmod(1.0)
    hue = (hue + shift.to(x.dtype).view(-1, 1, 1)).remainder(1.0)
    # HSV -> RGB: sector i = floor(6h), fraction f
    h6 = hue * 6.0
    sector = torch.floor(h6)
    frac = h6 - sector
    sector = sector.long().remainder(6)
    v = maxc
    p = (v * (1 - sat)).clamp(0, 1)
    q = (v * (1 - sat * frac)).clamp(0, 1)
    t = (v * (1 - sat * (1 - frac))).clamp(0, 1)
    candidates = torch.stack([v, p, q, t], dim=1)  # (n, 4, H, W)
    # (r, g, b) = indices into (v, p, q, t) for sectors 0..5
    table = torch.tensor([[0, 2, 1, 1, 3, 0], [3, 0, 0, 2, 1, 1], [1, 1, 3, 0, 0, 2]], device=x.device)
    index = table[:, sector].permute(1, 0, 2, 3)  # (n, 3, H, W)
    return candidates.gather(1, index)


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def color_jitter(x: Tensor, factors: Tensor, order: Tensor, apply: Tensor, sync_free: bool | None = None) -> Tensor:
    """ColorJitter with a per-image random order of (brightness, contrast, saturation,
    hue), applied only where ``apply`` is true. ``sync_free`` (default: on CUDA) evaluates
    every op on the whole batch and selects with ``torch.where`` (no host sync, 4× the
    arithmetic); otherwise each op runs on the rows that need it."""
    if sync_free is None:
        sync_free = x.is_cuda
    for position in range(4):
        for op_index, op in enumerate(_JITTER_OPS):
            chosen = apply & (order[:, position] == op_index)
            if sync_free:
                x = torch.where(chosen.view(-1, 1, 1, 1), op(x, factors[:, op_index]), x)
            else:
                rows = chosen.nonzero().squeeze(1)
                if rows.numel():
                    x = x.index_copy(0, rows, op(x[rows], factors[rows, op_index]))
    return x


def random_grayscale(x: Tensor, mask: Tensor) -> Tensor:
    """Replace the images where ``mask`` is true by their luma in all 3 channels."""
    return torch.where(mask.view(-1, 1, 1, 1), grayscale(x).expand_as(x), x)


def normalize(x: Tensor, mean, std) -> Tensor:
    """``(x − mean) / std`` per channel."""
    mean = torch.as_tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.as_tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std


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

    def chunk_params(self, n: int, height: int, width: int, n_split: int, generator=None, device=None):
        """Parameter rows for the two equivariance views of n images in ``n_split``
        consecutive chunks. ``"per-chunk"``: chunk k has its own pair (ã1_k, ã2_k), as the
        paper describes; ``"release"``: every chunk shares one pair, as the authors' code
        does in fact (``vmap(process, randomness='same')`` over the chunks)."""
        if n % n_split:
            raise ValueError(f"n_split={n_split} must divide the batch size {n}")
        sets = n_split if self.equiv_views == "per-chunk" else 1
        first = sample_params(sets, height, width, self.config, generator, device)
        second = sample_params(sets, height, width, self.config, generator, device)
        if sets == 1:
            return first.repeat_interleave(n), second.repeat_interleave(n)
        chunk = n // n_split
        return first.repeat_interleave(chunk), second.repeat_interleave(chunk)

    def chunk_views(self, images: Tensor, n_split: int, generator: torch.Generator | None = None):
        """``(ã1(x), ã2(x))`` with one augmentation pair per chunk (see :meth:`chunk_params`);
        without the crop when ``config.equiv_crop`` is false. The blur is torchvision's
        (the release blurs its equivariance views with ``transforms.GaussianBlur``)."""
        n, _, height, width = images.shape
        p1, p2 = self.chunk_params(n, height, width, n_split, generator, images.device)
        return self._apply_together([images, images], [p1, p2], **self._equiv_kwargs())

    def step_views(self, images: Tensor, generator: torch.Generator | None = None, *, n_split: int | None = None,
                   equiv_images: Tensor | None = None) -> list[Tensor]:
        """The views of one training step: two invariance views of ``images`` and, with
        ``n_split``, the two equivariance views of ``equiv_images`` (default: ``images``).

        Parameters are drawn in the order of ``views``, ``views``, ``chunk_views``, so the
        views are those of the three calls, but all of them are applied in ONE batched
        pass when the two kinds share their settings (crop and blur): on a GPU the
        augmentation is bound by kernel launches, not arithmetic, so one pass over 4n
        images costs about what one over n does."""
        n, _, height, width = images.shape
        invariant = [sample_params(n, height, width, self.config, generator, images.device) for _ in range(2)]
        if n_split is None:
            return list(self._apply_together([images, images], invariant, crop=True))
        eq = images if equiv_images is None else equiv_images
        equivariant = list(self.chunk_params(eq.shape[0], eq.shape[2], eq.shape[3], n_split, generator, eq.device))
        inv_kw, eq_kw = {"crop": True, "blur_impl": self.config.blur_impl}, self._equiv_kwargs()
        if inv_kw == eq_kw and eq.shape[1:] == images.shape[1:]:
            return list(self._apply_together([images, images, eq, eq], invariant + equivariant, **inv_kw))
        return [*self._apply_together([images, images], invariant, **inv_kw),
                *self._apply_together([eq, eq], equivariant, **eq_kw)]

    def _equiv_kwargs(self) -> dict:
        return {"crop": self.config.equiv_crop, "blur_impl": "torchvision"}

    def _apply_together(self, images: list[Tensor], params: list[AugmentParams], **kwargs) -> tuple[Tensor, ...]:
        """``apply_params`` of each (images, params) pair, computed as one batched pass."""
        out = self._apply(torch.cat(images), AugmentParams.cat(params), self.config, **kwargs)
        return out.split([x.shape[0] for x in images])

    def eval_view(self, images: Tensor) -> Tensor:
        """Evaluation transform: resize to ``size`` when needed (STL10 96 → 32, as the
        release's ``Resize(32)``), then normalise."""
        return normalize(resize(images, self.config.size), self.config.mean, self.config.std)
