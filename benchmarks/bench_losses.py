"""Forward+backward time of the CARE loss against InfoNCE alone, and against a
straightforward per-chunk Python loop for the equivariance term.

    uv run python benchmarks/bench_losses.py [--device auto] [--repeats 20]

Columns: batch n, n_split K, InfoNCE ms, CARE ms (InfoNCE + L_equi), (CARE − InfoNCE) in %
of InfoNCE, L_equi alone (its two views normalised, forward+backward) in ms and in % of
InfoNCE, the per-chunk Python loop in ms, loop/vectorised. On a shared 2-core machine the
difference of two totals is noisy; the L_equi/NCE column times the term on its own.
Goal (issue 4): the equivariance term adds < 25% to InfoNCE's time on CPU at batch 512.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from protein_care.devices import resolve_device
from protein_care.losses import care_loss, equivariance_loss, info_nce


def equivariance_loss_loop(z1, z2, n_split):
    """Reference: the release-normalised loss with a Python loop over chunks."""
    losses = []
    for a, b in zip(z1.chunk(n_split), z2.chunk(n_split)):
        diff = (a @ a.T - b @ b.T).pow(2)
        diff = diff - torch.diag(torch.diagonal(diff))
        losses.append(2 * diff.sum(1).mean())
    return torch.stack(losses).mean()


def time_interleaved(fns, inputs, device, repeats):
    """Median ms of forward+backward for each function, timed in alternating rounds so
    that drift in machine load hits every function alike."""

    def once(fn):
        for t in inputs:
            t.grad = None
        start = time.perf_counter()
        fn(*inputs).backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for fn in fns:
        for _ in range(3):
            once(fn)
    samples = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            samples[i].append(once(fn))
    return [statistics.median(s) * 1e3 for s in samples]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--dim", type=int, default=128)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.dim < 1:
        parser.error("--repeats and --dim must be >= 1")
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; d = {args.dim}; median of {args.repeats} runs")
    header = (f"{'n':>5} {'K':>3} {'InfoNCE ms':>11} {'CARE ms':>9} {'CARE-NCE %':>11} {'L_equi ms':>10} "
              f"{'L_equi/NCE':>11} {'loop ms':>8} {'loop/vec':>9}")
    print(header)
    print("-" * len(header))
    g = torch.Generator(device=device).manual_seed(0)
    for n in (256, 512, 1024):
        raw = [torch.randn(n, args.dim, generator=g, device=device, requires_grad=True) for _ in range(4)]

        def nce(a, b, c, d):
            return info_nce(F.normalize(a, dim=1), F.normalize(b, dim=1), 0.5)

        for k in (4, 8, 16):
            def care(a, b, c, d, k=k):
                z = [F.normalize(t, dim=1) for t in (a, b, c, d)]
                return care_loss(*z, temperature=0.5, lam=0.01, n_split=k)["loss"]

            def equi(a, b, c, d, k=k):
                return equivariance_loss(F.normalize(c, dim=1), F.normalize(d, dim=1), k)

            def loop(a, b, c, d, k=k):
                return equivariance_loss_loop(F.normalize(c, dim=1), F.normalize(d, dim=1), k)

            t_nce, t_care, t_equi, t_loop = time_interleaved([nce, care, equi, loop], raw, device, args.repeats)
            overhead = 100 * (t_care - t_nce) / t_nce
            print(f"{n:>5} {k:>3} {t_nce:>11.3f} {t_care:>9.3f} {overhead:>10.1f}% {t_equi:>10.3f} "
                  f"{100 * t_equi / t_nce:>10.1f}% {t_loop:>8.3f} {t_loop / t_equi:>8.2f}x")


if __name__ == "__main__":
    main()
