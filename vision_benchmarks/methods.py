"""SimCLR and MoCo-v2, each with or without CARE's equivariance term.

One training step sees a uint8 batch ``x`` on the device and makes, with
:class:`~vision_benchmarks.augment.BatchAugment`, the invariance views ``v1, v2``
(independent parameters per image) and, when the loss has an equivariance term, the
equivariance views ``ẽ1, ẽ2`` (one augmentation pair per chunk of ``n_split``). By default
(``passes="per-view"``) each view is its own forward pass (BatchNorm statistics per pass),
four per CARE step, as in the release (``cifar10_cifar100_stl10/main.py``).

``passes="joint"`` embeds the views of the online encoder in one forward pass over their
concatenation: one pass over 4n images instead of four over n, larger kernels and a
quarter of the launches (the step's arithmetic is the same). What changes:
- BatchNorm in training mode normalises every layer with the statistics of all the views
  together (invariance and equivariance views, 4n images) instead of each view's own n,
  so the gradients differ, as in SimCLR implementations that concatenate their two views;
- the running statistics are updated once per step instead of once per view (with
  momentum 0.1 they follow the training distribution more slowly, which the kNN monitor
  and the probe see in eval mode);
- MoCo's key encoder keeps its own shuffled sub-batch passes (ShuffleBN): only the query
  encoder's views are joined.
With the encoder in eval mode (no batch statistics) both give the same embeddings.

- :class:`SimCLR`: ``combined_loss(loss, f(v1), f(v2), f(ẽ1), f(ẽ2))`` from
  ``protein_care.losses``: InfoNCE (SimCLR), CARE = InfoNCE + λ·L_equi, or an ablation
  (``inv``, ``unif``, ``equi-unif``).
- :class:`MoCo`: query ``q = f_q(v1)``, key ``k = f_k(v2)`` from the momentum encoder
  ``θ_k ← m·θ_k + (1−m)·θ_q`` (updated before the keys, as MoCo), negatives from a queue
  of past keys: ``info_nce_queue(q, k, queue, τ)``; CARE adds λ·L_equi on
  ``f_q(ẽ1), f_q(ẽ2)`` (the release's ImageNet100 code passes them through the query
  encoder). On one device the key encoder runs on ``key_bn_splits`` shuffled sub-batches,
  so that its BatchNorm cannot see the whole batch (ShuffleBN's purpose). Under DDP the
  queue takes the keys of every rank (MoCo's ``concat_all_gather``); the key encoder's
  sub-batches stay per rank.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from protein_care.losses import combined_loss, equivariance_loss, info_nce_queue, loss_variant
from vision_benchmarks.augment import BatchAugment
from vision_benchmarks.distributed import all_gather_cat
from vision_benchmarks.imagenet import DecodedBatch

#: How a step runs its online encoder over the views (see the module docstring).
PASSES = ("per-view", "joint")


class SimCLR(nn.Module):
    """SimCLR-framework objectives; see the module docstring.

    Args:
        encoder: a :class:`~vision_benchmarks.models.Encoder`.
        loss: a name of ``protein_care.losses.LOSS_VARIANTS``.
        temperature: τ of InfoNCE.
        lam: λ of L_equi.
        n_split: chunks of the equivariance batch.
        equiv_batch_size: images in the equivariance views (0: the whole batch).
        normalization: L_equi normalisation (``release`` or ``pair_mean``).
        passes: ``per-view`` (one forward pass per view, the release) or ``joint`` (one
            pass over all the online encoder's views; see the module docstring).
    """

    def __init__(self, encoder: nn.Module, *, loss: str = "simclr", temperature: float = 0.5, lam: float = 0.0,
                 n_split: int = 1, equiv_batch_size: int = 0, normalization: str = "release",
                 passes: str = "per-view"):
        super().__init__()
        if passes not in PASSES:
            raise ValueError(f"passes must be one of {PASSES}, got {passes!r}")
        self.passes = passes
        self.encoder = encoder
        self.variant = loss_variant(loss)
        self.loss_name = loss
        self.temperature = temperature
        self.lam = lam
        self.n_split = n_split
        self.equiv_batch_size = equiv_batch_size
        self.normalization = normalization
        self._embed = encoder.embed

    def use_forward(self, forward: nn.Module) -> None:
        """Run the training forward passes through ``forward`` (a wrapper of
        ``self.encoder`` returning ``(h, z)``: ``torch.compile``, DDP, or both)."""
        self._embed = lambda x: F.normalize(forward(x)[1].float(), dim=1)

    def embed_views(self, views: list[Tensor]) -> list[Tensor]:
        """The online encoder's embeddings of ``views``: one pass per view, or one pass
        over their concatenation (``passes="joint"``) split back into the views."""
        if self.passes == "per-view" or len(views) == 1:
            return [self._embed(v) for v in views]
        shapes = {tuple(v.shape[1:]) for v in views}
        if len(shapes) > 1:
            raise ValueError(f"passes='joint' needs views of one image shape, got {sorted(shapes)}")
        joined = torch.cat(views)
        if views[0].is_contiguous(memory_format=torch.channels_last):
            joined = joined.contiguous(memory_format=torch.channels_last)
        return list(self._embed(joined).split([v.shape[0] for v in views]))

    def compile(self, **kwargs) -> None:
        """Use ``torch.compile`` for the encoder's forward passes."""
        self.use_forward(torch.compile(self.encoder, **kwargs))

    def views(self, x, augment: BatchAugment, generator) -> list[Tensor]:
        """The step's views: two invariance views of each image and, for CARE, the two
        equivariance views of the first ``equiv_batch_size`` images, in one chunk per
        ``n_split`` (a :class:`DecodedBatch` brings its crops and equivariance images)."""
        equivariant = self.variant.needs_equivariance_views
        if isinstance(x, DecodedBatch):
            views = [augment.views(v, generator, crop=False) for v in x.views]
            # the loader decodes the sources of the first equiv_batch_size images only
            return views + list(augment.chunk_views(x.equiv, self.n_split, generator)) if equivariant else views
        equiv_images = (x[: self.equiv_batch_size] if self.equiv_batch_size else x) if equivariant else None
        return augment.step_views(x, generator, n_split=self.n_split if equivariant else None,
                                  equiv_images=equiv_images)

    def step(self, x, augment: BatchAugment, generator=None, channels_last: bool = False) -> dict[str, Tensor]:
        """Loss parts of one step on the uint8 batch ``x`` (a tensor, or a
        :class:`DecodedBatch` from the ImageNet100 loader); ``loss`` is what to minimise."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        views = self.views(x, augment, generator)
        z = self.embed_views([v.contiguous(memory_format=fmt) for v in views])
        z1, z2 = z[:2]
        z1_eq, z2_eq = z[2:] if len(z) == 4 else (None, None)
        return combined_loss(
            self.loss_name, z1, z2, z1_eq, z2_eq, temperature=self.temperature, lam=self.lam,
            n_split=self.n_split, normalization=self.normalization,
        )

    def trainable_parameters(self):
        return self.encoder.parameters()


class MoCo(SimCLR):
    """MoCo-v2 (``loss="simclr"``) or CARE on MoCo-v2 (``loss="care"``).

    Extra args: ``queue_size`` M, ``momentum`` m, ``key_bn_splits``.
    """

    def __init__(self, encoder: nn.Module, *, queue_size: int = 4096, momentum: float = 0.99,
                 key_bn_splits: int = 1, proj_dim: int = 128, **kwargs):
        super().__init__(encoder, **kwargs)
        if self.loss_name not in ("simclr", "care"):
            raise ValueError(f"MoCo supports loss 'simclr' (MoCo-v2) or 'care', got {self.loss_name!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        self.key_encoder = copy.deepcopy(encoder)
        for p in self.key_encoder.parameters():
            p.requires_grad_(False)
        self.momentum = momentum
        self.key_bn_splits = key_bn_splits
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))  # (M, d)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _momentum_update(self) -> None:
        for q, k in zip(self.encoder.parameters(), self.key_encoder.parameters()):
            k.mul_(self.momentum).add_(q.detach(), alpha=1 - self.momentum)
        # buffers (BatchNorm running statistics) are the key encoder's own, as in MoCo

    @torch.no_grad()
    def _keys(self, views: Tensor, generator=None) -> Tensor:
        """The key encoder's embeddings, computed in ``key_bn_splits`` shuffled sub-batches
        (ShuffleBN on one device); the shuffle draws from ``generator``, the run's
        checkpointed augmentation generator, so a resumed run repeats it."""
        n = views.shape[0]
        splits = self.key_bn_splits if n % self.key_bn_splits == 0 else 1
        perm = torch.randperm(n, device=views.device, generator=generator)
        keys = torch.cat([self.key_encoder.embed(chunk) for chunk in views[perm].chunk(splits)])
        return keys[torch.argsort(perm)]  # undo the shuffle

    @torch.no_grad()
    def _enqueue(self, keys: Tensor) -> None:
        keys = all_gather_cat(keys)  # under DDP: every rank's keys, so the queues stay equal
        n, size = keys.shape[0], self.queue.shape[0]
        ptr = int(self.queue_ptr)
        index = (torch.arange(n, device=keys.device) + ptr) % size
        self.queue[index] = keys.to(self.queue.dtype)
        self.queue_ptr.fill_((ptr + n) % size)

    def step(self, x, augment: BatchAugment, generator=None, channels_last: bool = False) -> dict[str, Tensor]:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        views = [v.contiguous(memory_format=fmt) for v in self.views(x, augment, generator)]
        # the query encoder's views: v1, and ẽ1, ẽ2 for CARE (the key encoder's v2 apart)
        q, *equivariance_views = self.embed_views([views[0], *views[2:]])
        self._momentum_update()
        k = self._keys(views[1], generator)
        contrastive = info_nce_queue(q, k, self.queue.clone(), self.temperature)
        parts = {"info_nce": contrastive}
        loss = contrastive
        if equivariance_views:
            z1_eq, z2_eq = equivariance_views
            equi = equivariance_loss(z1_eq, z2_eq, self.n_split, self.normalization)
            parts["equivariance"] = equi
            loss = loss + self.lam * equi
        self._enqueue(k)
        parts["loss"] = loss
        return parts


def build_method(cfg: dict, encoder: nn.Module) -> SimCLR:
    """The method a resolved run config asks for (see ``configs/_base.toml``)."""
    m = cfg["method"]
    common = dict(loss=m["loss"], temperature=m["temperature"], lam=m["lam"], n_split=m["n_split"],
                  equiv_batch_size=m["equiv_batch_size"], normalization=m["normalization"], passes=m["passes"])
    if m["framework"] == "simclr":
        return SimCLR(encoder, **common)
    mc = cfg["moco"]
    return MoCo(encoder, queue_size=mc["queue_size"], momentum=mc["momentum"], key_bn_splits=mc["key_bn_splits"],
                proj_dim=cfg["model"]["proj_dim"], **common)
