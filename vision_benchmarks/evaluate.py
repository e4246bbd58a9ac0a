"""Evaluation of a frozen backbone: the weighted-kNN monitor and the linear probe.

- :func:`knn_top1`: the release's online monitor (``main.py: test``). Features are the
  L2-normalised backbone outputs of the un-augmented (resized, normalised) images. For
  each test image the k most cosine-similar memory images vote for their labels with
  weight exp(s/τ); the class with the largest summed weight is the prediction.
- :func:`linear_probe`: a linear classifier on frozen, *unnormalised* backbone features
  (as the release's ``linear.py``), with the paper's schedule from the ``probe`` config
  (CIFAR/STL10: 100 epochs, batch 512, Adam 1e-3, wd 1e-6); top-1 test accuracy after
  the last epoch. The backbone stays in eval mode. By default the features of the
  un-augmented training images are computed once; ``probe.augment = true`` trains on
  freshly augmented views every epoch, as the release does.
"""

from __future__ import annotations

import math
import statistics

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vision_benchmarks.augment import BatchAugment


@torch.no_grad()
def eval_batches(module: nn.Module, inputs: Tensor, batch_size: int, forward) -> Tensor:
    """``forward(x)`` of every batch ``x`` of ``inputs`` (moved to ``module``'s device),
    concatenated, with ``module`` in eval mode and no gradient; its training flag is
    restored afterwards."""
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    out = []
    chunks = (inputs.batches(batch_size) if hasattr(inputs, "batches")  # FolderImages: decoded by its workers
              else (inputs[start:start + batch_size] for start in range(0, inputs.shape[0], batch_size)))
    try:
        for x in chunks:
            out.append(forward(x.to(device)))
    finally:
        module.train(was_training)
    return torch.cat(out)


def backbone_features(backbone: nn.Module, images: Tensor, augment: BatchAugment, *, batch_size: int = 512,
                      normalize: bool = True, amp: bool = True, train_views: bool = False, generator=None) -> Tensor:
    """``(N, F)`` float32 backbone features of uint8 ``images`` in eval mode, batch by batch
    (eval view, or a random training view when ``train_views``)."""

    def features(x: Tensor) -> Tensor:
        x = augment.views(x, generator) if train_views else augment.eval_view(x)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp and x.device.type == "cuda"):
            h = backbone(x).float()
        return F.normalize(h, dim=1) if normalize else h

    return eval_batches(backbone, images, batch_size, features)


@torch.no_grad()
def knn_predict(bank: Tensor, bank_labels: Tensor, queries: Tensor, num_classes: int, *, k: int = 200,
                temperature: float = 0.1, chunk: int = 1024) -> Tensor:
    """Weighted-kNN predictions for L2-normalised ``queries`` against ``bank``:
    ``score_c = Σ_{j ∈ top-k} exp(s_j / τ)·[y_j = c]``, prediction = argmax_c score_c."""
    if temperature <= 0:
        raise ValueError(f"kNN temperature must be positive, got {temperature}")
    k = min(k, bank.shape[0])
    preds = []
    for start in range(0, queries.shape[0], chunk):
        sim = queries[start:start + chunk] @ bank.T  # (q, N) cosine similarities
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = (top_sim / temperature).exp()  # (q, k)
        votes = torch.zeros(sim.shape[0], num_classes, device=sim.device, dtype=weights.dtype)
        votes.scatter_add_(1, bank_labels[top_idx], weights)
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)


def knn_top1(backbone: nn.Module, data, augment: BatchAugment, *, k: int = 200, temperature: float = 0.1,
             amp: bool = True) -> float:
    """kNN top-1 accuracy (%) of ``backbone`` on ``data`` (memory → test)."""
    bank = backbone_features(backbone, data.memory, augment, amp=amp)
    queries = backbone_features(backbone, data.test, augment, amp=amp)
    labels = data.memory_labels.to(bank.device)
    pred = knn_predict(bank, labels, queries, data.num_classes, k=k, temperature=temperature)
    return 100.0 * (pred.cpu() == data.test_labels.cpu()).float().mean().item()


def lr_factor(schedule: str, progress: float, *, warmup: float = 0.0, milestones=(), gamma: float = 0.1,
              epoch: float = 0.0, epochs: int = 0) -> float:
    """Learning-rate multiplier. ``progress`` ∈ [0, 1] is the fraction of training done and
    ``warmup`` the warm-up fraction (release ``adjust_learning_rate``: linear from 0, then
    cosine to 0, per step); ``cosine-epoch`` is the same curve changed once per epoch, at
    ``epoch / epochs`` (the MoCo code of the release's ImageNet100 runs:
    lr · ½(1 + cos(π · epoch / epochs))); ``step`` multiplies by ``gamma`` at each
    milestone epoch passed."""
    if schedule == "cosine-epoch":
        if epochs < 1:
            raise ValueError(f"the cosine-epoch schedule needs the number of epochs, got {epochs}")
        schedule, progress = "cosine", int(epoch) / epochs
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return gamma ** sum(epoch >= m for m in milestones)
    if schedule == "cosine":
        if progress < warmup:
            return progress / warmup
        return 0.5 * (1 + math.cos(math.pi * (progress - warmup) / max(1e-12, 1 - warmup)))
    raise ValueError(f"unknown schedule {schedule!r}")


def make_optimizer(name: str, params, *, lr: float, weight_decay: float, momentum: float = 0.9):
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose 'adam' or 'sgd'")


def linear_probe(backbone: nn.Module, data, augment: BatchAugment, probe: dict, *, seed: int = 0,
                 amp: bool = True, progress: bool = False) -> float:
    """Top-1 test accuracy (%) of a linear classifier trained on frozen features."""
    device = next(backbone.parameters()).device
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    labels = data.memory_labels.to(device)
    test_feats = backbone_features(backbone, data.test, augment, normalize=False, amp=amp)
    train_feats = None if probe["augment"] else backbone_features(
        backbone, data.memory, augment, normalize=False, amp=amp)
    classifier = nn.Linear(test_feats.shape[1], data.num_classes).to(device)
    optimizer = make_optimizer(probe["optimizer"], classifier.parameters(), lr=probe["lr"],
                               weight_decay=probe["weight_decay"], momentum=probe["momentum"])
    n, batch, epochs = labels.shape[0], probe["batch_size"], probe["epochs"]
    epoch_iter = range(epochs)
    if progress:
        from tqdm import tqdm
        epoch_iter = tqdm(epoch_iter, desc=f"linear probe seed {seed}", leave=False)
    for epoch in epoch_iter:
        factor = lr_factor(probe["schedule"], epoch / epochs, milestones=probe["milestones"],
                           gamma=probe["gamma"], epoch=epoch, epochs=epochs)
        for group in optimizer.param_groups:
            group["lr"] = probe["lr"] * factor
        feats = train_feats
        if feats is None:
            feats = backbone_features(backbone, data.memory, augment, normalize=False, amp=amp,
                                      train_views=True, generator=generator)
        order = torch.randperm(n, device=device, generator=generator)
        for start in range(0, n, batch):  # the release keeps the last partial batch
            idx = order[start:start + batch]
            loss = F.cross_entropy(classifier(feats[idx]), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        pred = classifier(test_feats).argmax(dim=1).cpu()
    return 100.0 * (pred == data.test_labels.cpu()).float().mean().item()


def linear_probe_seeds(backbone: nn.Module, data, augment: BatchAugment, probe: dict, **kwargs) -> dict:
    """:func:`linear_probe` for every seed in ``probe["seeds"]`` → mean, std (sample), per seed."""
    scores = [linear_probe(backbone, data, augment, probe, seed=s, **kwargs) for s in probe["seeds"]]
    std = statistics.stdev(scores) if len(scores) > 1 else 0.0
    return {"mean": statistics.fmean(scores), "std": std, "per_seed": scores, "seeds": list(probe["seeds"])}
