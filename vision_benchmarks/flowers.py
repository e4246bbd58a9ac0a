"""Flowers-102 colour-jitter retrieval (CARE Fig. 4, after Bhardwaj et al. 2023).

For a query image x and a colour jitter a (ColorJitter always applied, the run's
strengths; one draw per query), the k nearest gallery images by Euclidean distance of
f(x) and of f(a(x)) are retrieved (the query's own gallery entry excluded). An invariant
encoder retrieves the same neighbours for both; an equivariant one follows the colour
change. Reported per query and on average:

- ``overlap`` = |N_k(x) ∩ N_k(a(x))| / k (1: jitter-blind);
- ``query_colour_shift`` = ‖c(a(x)) − c(x)‖ and ``neighbour_colour_shift`` =
  ‖mean c(N_k(a(x))) − mean c(N_k(x))‖, with c the mean RGB in [0, 1].

The images are read by torchvision's ``Flowers102`` from its on-disk layout
(``flowers-102/jpg/image_XXXXX.jpg``, ``imagelabels.mat``, ``setid.mat``), resized
(shorter side, antialiased) and centre-cropped to the run's ``augment.size``, and cached
as uint8 under ``<root>/vision_benchmarks_cache/`` like the training data sets.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from data_pipeline.atomic_files import write_torch_atomic
from vision_benchmarks.augment import BatchAugment, apply_params, sample_params
from vision_benchmarks.data import CACHE_DIR, DatasetNotFound, _source_key
from vision_benchmarks.measure import describe, embed, only


def load_flowers102(root: str | Path, split: str = "test", size: int = 32, *, download: bool = False,
                    max_images: int = 0, cache: bool = True) -> tuple[Tensor, Tensor]:
    """``(images (N, 3, size, size) uint8, labels (N,) int64)`` of a Flowers-102 split."""
    from torchvision.datasets import Flowers102
    from torchvision.transforms.v2 import functional as TF

    root = Path(root)
    try:
        dataset = Flowers102(str(root), split=split, download=download)
    except RuntimeError as error:
        raise DatasetNotFound(f"Flowers-102 was not found under {str(root)!r} ({error}); pass "
                              "--set measure.flowers_download=true or put flowers-102/ there") from None
    count = len(dataset) if max_images <= 0 else min(max_images, len(dataset))
    source = root / "flowers-102"
    cache_path = None
    if cache:
        cache_path = root / CACHE_DIR / f"flowers102-{split}-{size}-{count}-{_source_key('flowers102', source)}.pt"
        if cache_path.is_file():
            blob = torch.load(cache_path, weights_only=True)
            return blob["images"], blob["labels"]
    images = torch.empty(count, 3, size, size, dtype=torch.uint8)
    labels = torch.empty(count, dtype=torch.int64)
    for k in range(count):
        pil, label = dataset[k]
        image = TF.resize(TF.pil_to_tensor(pil.convert("RGB")), [size], antialias=True)
        images[k], labels[k] = TF.center_crop(image, [size, size]), label
    if cache_path is not None:
        write_torch_atomic(cache_path, {"images": images, "labels": labels})
    return images, labels


def _display(views: Tensor, augment: BatchAugment) -> Tensor:
    """Normalised float views back to uint8 ``(n, 3, H, W)`` for the figure."""
    mean = torch.tensor(augment.config.mean, device=views.device).view(1, 3, 1, 1)
    std = torch.tensor(augment.config.std, device=views.device).view(1, 3, 1, 1)
    return (views * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)


def colour_jitter_retrieval(encoder: nn.Module, gallery: Tensor, augment: BatchAugment, *, queries: int = 8,
                            k: int = 5, space: str = "backbone", seed: int = 0, amp: bool = False) -> dict:
    """Retrieval of :mod:`this module <vision_benchmarks.flowers>` on uint8 ``gallery``.

    Returns the JSON-ready numbers and, under ``"images"``, uint8 tensors for
    :func:`mosaic` (queries, jittered queries, both neighbour sets)."""
    n, _, height, width = gallery.shape
    if n < k + 1:
        raise ValueError(f"the gallery has {n} images; retrieval of {k} neighbours needs at least {k + 1}")
    device = next(encoder.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    query_idx = torch.randperm(n, generator=generator)[:queries].sort().values
    params = only("jitter", sample_params(len(query_idx), height, width, augment.config, generator), height, width)
    gallery_emb = embed(encoder, augment.eval_view(gallery.to(device)), space, amp=amp)  # (N, d)
    x = gallery[query_idx].to(device)
    plain_views = augment.eval_view(x)
    jittered_views = apply_params(x, params._map(lambda t: t.to(device)), augment.config)
    out = {}
    for name, views in (("plain", plain_views), ("jittered", jittered_views)):
        dist = torch.cdist(embed(encoder, views, space, amp=amp), gallery_emb)  # (q, N)
        dist[torch.arange(len(query_idx), device=device), query_idx.to(device)] = float("inf")  # not the query itself
        out[name] = dist.topk(k, dim=1, largest=False).indices.cpu()  # (q, k)
    colour = lambda imgs: imgs.float().div(255).mean(dim=(-1, -2))  # noqa: E731  (.., 3) mean RGB
    plain_img, jitter_img = _display(plain_views, augment).cpu(), _display(jittered_views, augment).cpu()
    overlap = [len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(out["plain"], out["jittered"])]
    neighbour_shift = (colour(gallery[out["jittered"]]).mean(1) - colour(gallery[out["plain"]]).mean(1)).norm(dim=1)
    query_shift = (colour(jitter_img) - colour(plain_img)).norm(dim=1)
    return {
        "queries": query_idx.tolist(), "k": k, "space": space, "gallery_size": n,
        "neighbours_plain": out["plain"].tolist(), "neighbours_jittered": out["jittered"].tolist(),
        "jitter": [describe(params[i:i + 1]) for i in range(len(query_idx))],
        "overlap": overlap, "mean_overlap": sum(overlap) / len(overlap),
        "query_colour_shift": query_shift.tolist(), "neighbour_colour_shift": neighbour_shift.tolist(),
        "mean_neighbour_colour_shift": float(neighbour_shift.mean()),
        "images": {"plain": plain_img, "jittered": jitter_img, "gallery": gallery.cpu()},
    }


def mosaic(result: dict, gap: int = 2) -> Tensor:
    """``(H, W, 3)`` uint8 grid: per query a row [x | N_k(x)] and a row [a(x) | N_k(a(x))],
    white gaps between the images, three times as wide after the query column and twice
    as high between queries."""
    images = result["images"]
    gallery = images["gallery"]
    size = gallery.shape[-1]
    k = result["k"]
    cell = size + gap
    rows = []
    for q in range(len(result["queries"])):
        for query, neighbours in ((images["plain"][q], result["neighbours_plain"][q]),
                                  (images["jittered"][q], result["neighbours_jittered"][q])):
            row = torch.full((3, size, size + 3 * gap + k * cell), 255, dtype=torch.uint8)
            row[:, :, :size] = query
            for j, index in enumerate(neighbours):
                start = size + 3 * gap + j * cell
                row[:, :, start:start + size] = gallery[index]
            rows.append(row)
        rows.append(torch.full((3, gap * 2, rows[-1].shape[-1]), 255, dtype=torch.uint8))
    return torch.cat(rows, dim=1).permute(1, 2, 0).contiguous()
