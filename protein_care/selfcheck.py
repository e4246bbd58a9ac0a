"""Property checks of the loss core, rotations and Wahba solver on random data.

``protein-care selfcheck`` runs them on the chosen device and prints a table: a user's
first proof that an install computes the mathematics correctly on their hardware.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from protein_care.geometry import axis_rotation, random_orthogonal, random_rotations, solve_wahba, wahba_error
from protein_care.losses import equivariance_loss, info_nce
from protein_care.metrics import geodesic_angle, relative_equivariance


@dataclass(frozen=True)
class CheckResult:
    name: str
    value: float
    tolerance: float
    comparison: str  # "<=" (value must be at most tolerance) or ">=" (at least)

    @property
    def passed(self) -> bool:
        if not math.isfinite(self.value):
            return False
        return self.value <= self.tolerance if self.comparison == "<=" else self.value >= self.tolerance


def _checks(device: torch.device, seed: int) -> list[tuple[str, str, float, Callable[[torch.Generator], float]]]:
    def unit(g, n, d):
        return F.normalize(torch.randn(n, d, generator=g, device=device), dim=1)

    def info_nce_vs_cross_entropy(g):
        z1, z2 = unit(g, 256, 128), unit(g, 256, 128)
        z = torch.cat([z1, z2])
        sim = (z @ z.T / 0.5).fill_diagonal_(-float("inf"))
        target = torch.arange(512, device=device).roll(256)
        return abs(float(info_nce(z1, z2, 0.5)) - float(F.cross_entropy(sim, target)))

    def info_nce_parts(g):  # uniformity: log of the sum over the 2n - 2 negatives of each row
        z1, z2 = unit(g, 256, 128), unit(g, 256, 128)
        p = info_nce(z1, z2, 0.1, return_parts=True)
        z = torch.cat([z1, z2]).double()
        keep = ~(torch.eye(512, dtype=torch.bool, device=device) | torch.eye(512, dtype=torch.bool, device=device).roll(256, 1))
        direct = torch.exp(z @ z.T / 0.1)[keep].view(512, 510).sum(1).log().mean()
        return abs(float(p["uniformity"]) - float(direct))

    def info_nce_small_tau_bf16(g):
        z1, z2 = unit(g, 256, 128).bfloat16(), unit(g, 256, 128).bfloat16()
        return 0.0 if torch.isfinite(info_nce(z1, z2, 0.01)) else float("inf")

    def equi_orthogonal(g):
        z1 = unit(g, 512, 128)
        q = random_orthogonal(8, 128, generator=g, device=device)
        z2 = (z1.reshape(8, 64, 128) @ q.transpose(1, 2)).reshape(512, 128)
        return float(equivariance_loss(z1, z2, 8))

    def equi_non_orthogonal(g):
        z1 = unit(g, 512, 128)
        scale = torch.ones(128, device=device)
        scale[:8] = 2.0
        return float(equivariance_loss(z1, z1 * scale, 8))

    def haar_trace_mean(g):
        tr = torch.diagonal(random_rotations(50_000, generator=g, device=device, dtype=torch.float64), dim1=1, dim2=2).sum(1)
        return abs(float(tr.mean()))

    def haar_trace_second_moment(g):
        tr = torch.diagonal(random_rotations(50_000, generator=g, device=device, dtype=torch.float64), dim1=1, dim2=2).sum(1)
        return abs(float(tr.pow(2).mean()) - 1.0)

    def rotation_orthonormal(g):
        r = random_rotations(10_000, generator=g, device=device)
        eye = torch.eye(3, device=device)
        return float((r.transpose(1, 2) @ r - eye).abs().max() + (torch.linalg.det(r) - 1).abs().max())

    def wahba_recovery(g):
        F0 = torch.randn(1024, 128, generator=g, device=device)
        R = random_orthogonal(1, 128, generator=g, device=device)[0]
        noisy = F0 @ R.T + 0.01 * torch.randn(1024, 128, generator=g, device=device)
        return float(torch.linalg.matrix_norm(solve_wahba(F0, noisy) - R) / math.sqrt(128))

    def wahba_exact(g):
        F0 = torch.randn(256, 32, generator=g, device=device)
        R = random_orthogonal(1, 32, generator=g, device=device)[0]
        return float(wahba_error(F0, F0 @ R.T, normalized=True))

    def gamma_equivariant(g):
        fx = unit(g, 128, 64)
        q = random_orthogonal(1, 64, generator=g, device=device)[0]
        return relative_equivariance(fx, fx @ q.T).value

    def geodesic(g):
        angles = torch.linspace(0.0, math.pi, 33, device=device, dtype=torch.float64)
        eye = torch.eye(3, device=device, dtype=torch.float64).expand(33, 3, 3)
        return float((geodesic_angle(eye, axis_rotation("x", angles)) - angles).abs().max())

    return [
        ("InfoNCE = cross-entropy reference", "<=", 1e-4, info_nce_vs_cross_entropy),
        ("uniformity = mean log sum of negatives", "<=", 1e-4, info_nce_parts),
        ("InfoNCE finite at tau=0.01 in bf16", "<=", 0.0, info_nce_small_tau_bf16),
        ("L_equi = 0 for orthogonal map per chunk", "<=", 1e-5, equi_orthogonal),
        ("L_equi > 0 for a stretch", ">=", 1e-2, equi_non_orthogonal),
        ("Haar SO(3): |E tr R|", "<=", 0.03, haar_trace_mean),
        ("Haar SO(3): |E (tr R)^2 - 1|", "<=", 0.05, haar_trace_second_moment),
        ("rotations orthonormal, det 1", "<=", 1e-4, rotation_orthonormal),
        ("Wahba recovers R in SO(128)", "<=", 1e-2, wahba_recovery),
        ("Wahba error 0 for rotated data", "<=", 1e-4, wahba_exact),
        ("gamma_f = 0 for orthogonal map", "<=", 1e-8, gamma_equivariant),
        ("geodesic angle of axis rotation", "<=", 1e-9, geodesic),
    ]


def run_selfcheck(device: str | torch.device = "cpu", seed: int = 0) -> list[CheckResult]:
    """Run every check on ``device`` with a fixed seed and return the results."""
    device = torch.device(device)
    results = []
    for name, comparison, tolerance, check in _checks(device, seed):
        generator = torch.Generator(device=device).manual_seed(seed)
        results.append(CheckResult(name, check(generator), tolerance, comparison))
    return results


def format_table(results: list[CheckResult]) -> str:
    width = max(len(r.name) for r in results)
    lines = [f"{'check':<{width}}  {'value':>10}  {'tolerance':>11}  pass"]
    for r in results:
        lines.append(f"{r.name:<{width}}  {r.value:>10.3g}  {r.comparison} {r.tolerance:<9.3g}  {'yes' if r.passed else 'NO'}")
    return "\n".join(lines)
