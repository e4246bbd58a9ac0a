"""The paper's equivariance measurements of a frozen encoder under single augmentations.

For a batch of test images x_1..x_n and ONE sampled augmentation a applied to all of
them (one parameter set shared by the batch), with F, F_a the ``(n, d)`` embeddings of
x_i and a(x_i) (rows, L2-normalised):

- Wahba error (CARE §4, Fig. 2c/3): W_f = min_{R ∈ SO(d)} ‖F Rᵀ − F_a‖_Fro / √n
  (``protein_care.geometry.wahba_error(F, F_a, normalized=True)``);
- relative rotational equivariance γ_f (CARE eq. (2), Fig. 5):
  ``protein_care.metrics.relative_equivariance(F, F_a)``;
- cos(f(x_i), f(a(x_i))) = ⟨F_i, F_a,i⟩, its mean, variance σ² and histogram over
  [−1, 1] (Fig. 6; with ``model.proj_dim = 2`` this is the S¹ experiment).

Augmentations are drawn per type (:data:`AUGMENTATION_TYPES`, cycling): ``crop``
(RandomResizedCrop alone), ``flip`` (always mirrored), ``jitter`` (ColorJitter always
applied), ``grayscale``, ``blur`` (always blurred, σ sampled), and ``full`` (the whole
training pipeline with its probabilities), all with the run's augmentation settings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from protein_care.geometry import wahba_error
from protein_care.metrics import relative_equivariance
from vision_benchmarks.augment import AugmentConfig, AugmentParams, BatchAugment, apply_params, sample_params
from vision_benchmarks.evaluate import eval_batches

AUGMENTATION_TYPES = ("crop", "flip", "jitter", "grayscale", "blur", "full")


def only(kind: str, params: AugmentParams, height: int, width: int) -> AugmentParams:
    """``params`` with every op but ``kind`` switched off and ``kind`` forced on (the
    crop becomes the whole image unless ``kind == "crop"``); ``"full"`` keeps them all."""
    if kind not in AUGMENTATION_TYPES:
        raise ValueError(f"unknown augmentation type {kind!r}; choose one of {AUGMENTATION_TYPES}")
    if kind == "full":
        return params
    m = len(params)
    on = lambda name: torch.full((m,), kind == name, dtype=torch.bool, device=params.flip.device)  # noqa: E731
    whole = torch.tensor([0, 0, height, width], device=params.crop.device).expand(m, 4)
    return AugmentParams(
        crop=params.crop if kind == "crop" else whole.clone(), flip=on("flip"), jitter=on("jitter"),
        factors=params.factors, order=params.order, grayscale=on("grayscale"), blur=on("blur"), sigma=params.sigma,
    )


def sample_augmentations(count: int, height: int, width: int, config: AugmentConfig,
                         generator: torch.Generator) -> list[tuple[str, AugmentParams]]:
    """``count`` single augmentations ``(type, one parameter row)``, types cycling through
    :data:`AUGMENTATION_TYPES`; the same generator state gives the same list."""
    out = []
    for k in range(count):
        kind = AUGMENTATION_TYPES[k % len(AUGMENTATION_TYPES)]
        out.append((kind, only(kind, sample_params(1, height, width, config, generator), height, width)))
    return out


def describe(params: AugmentParams) -> dict:
    """The first parameter row as plain numbers (for evaluation.json)."""
    p = params[0:1]
    return {"crop": p.crop[0].tolist(), "flip": bool(p.flip[0]), "jitter": bool(p.jitter[0]),
            "factors": [round(v, 6) for v in p.factors[0].tolist()], "order": p.order[0].tolist(),
            "grayscale": bool(p.grayscale[0]), "blur": bool(p.blur[0]), "sigma": round(float(p.sigma[0]), 6)}


def embed(encoder: nn.Module, views: Tensor, space: str = "projection", *, batch_size: int = 256,
          amp: bool = False) -> Tensor:
    """``(n, d)`` float32 L2-normalised embeddings of normalised float ``views`` in eval
    mode: the projection z = f(x) (``space="projection"``) or the backbone feature h."""
    if space not in ("projection", "backbone"):
        raise ValueError(f"space must be 'projection' or 'backbone', got {space!r}")

    def embedding(x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp and x.device.type == "cuda"):
            h, z = encoder(x)
        return F.normalize((z if space == "projection" else h).float(), dim=1)

    return eval_batches(encoder, views, batch_size, embedding)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def augmentation_geometry(encoder: nn.Module, images: Tensor, augment: BatchAugment,
                          augmentations: list[tuple[str, AugmentParams]], *, space: str = "projection",
                          bins: int = 40, amp: bool = False) -> list[dict]:
    """One record per augmentation a: type, parameters, W_f (normalised), γ_f and the
    statistics of cos(f(x), f(a(x))) over the uint8 ``images`` (see the module docstring)."""
    n = images.shape[0]
    base = embed(encoder, augment.eval_view(images), space, amp=amp)  # F: (n, d)
    records = []
    for index, (kind, params) in enumerate(augmentations):
        views = apply_params(images, params.repeat_interleave(n), augment.config)  # one a for the whole batch
        moved = embed(encoder, views, space, amp=amp)  # F_a: (n, d)
        cos = (base * moved).sum(dim=1).clamp(-1, 1)
        gamma = relative_equivariance(base, moved)
        records.append({
            "index": index, "type": kind, "params": describe(params),
            "wahba_error": float(wahba_error(base, moved, normalized=True)),
            "gamma": _finite(gamma.value), "gamma_pairs": gamma.n_pairs, "gamma_skipped": gamma.n_skipped,
            "cos_mean": float(cos.mean()), "cos_var": float(cos.var(unbiased=False)),
            "cos_hist": torch.histc(cos.double(), bins=bins, min=-1.0, max=1.0).long().tolist(),
        })
    return records


def summarize(records: list[dict]) -> dict:
    """Mean and worst W_f, mean and median γ_f and mean cos variance, overall and per type.

    γ_f is ill-conditioned for an augmentation that barely moves the embeddings (moved by
    δ, distances change by O(δ) but the denominator is O(δ²)): e.g. grayscale on the
    already grey digits gives γ_f ~ 1e5 and dominates the mean; the median is robust."""
    def stats(rows):
        gammas = sorted(r["gamma"] for r in rows if r["gamma"] is not None)
        median = None
        if gammas:
            mid = len(gammas) // 2
            median = gammas[mid] if len(gammas) % 2 else (gammas[mid - 1] + gammas[mid]) / 2
        return {"n": len(rows), "wahba_mean": sum(r["wahba_error"] for r in rows) / len(rows),
                "wahba_max": max(r["wahba_error"] for r in rows),
                "gamma_mean": sum(gammas) / len(gammas) if gammas else None, "gamma_median": median,
                "cos_var_mean": sum(r["cos_var"] for r in rows) / len(rows)}

    per_type = {t: stats([r for r in records if r["type"] == t])
                for t in AUGMENTATION_TYPES if any(r["type"] == t for r in records)}
    return {**stats(records), "per_type": per_type}


def image_subset(images: Tensor, count: int, seed: int) -> Tensor:
    """Indices of ``count`` test images drawn without replacement (all when fewer), sorted."""
    n = images.shape[0]
    if count <= 0 or count >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count].sort().values
