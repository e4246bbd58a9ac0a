"""What the page's controls send, checked: the rotation axis and the steps per turn.

A bad value raises :class:`ExplorerError`, whose message the page shows as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

MAX_STEPS = 720
AXIS_NAMES = ("x", "y", "z")


class ExplorerError(Exception):
    """A problem to show to the user as a message (never a traceback)."""


@dataclass(frozen=True)
class Axis:
    """A rotation axis: ``spec`` is ``"x"``/``"y"``/``"z"`` or a unit 3-tuple (what
    :func:`protein_care.geometry.axis_rotation` takes), ``label`` how the page names it."""

    spec: str | tuple[float, float, float]
    label: str


def parse_axis(choice: str | None, text: str | None = None) -> Axis:
    """The axis chosen in the page: ``x``, ``y``, ``z``, or ``custom`` with ``text``
    holding three numbers (``"1 1 0"``, ``"1, 1, 0"``, ``"[1,1,0]"``). Raises
    :class:`ExplorerError` with what was expected."""
    if choice in AXIS_NAMES:
        return Axis(choice, choice)
    if choice != "custom":
        raise ExplorerError(f"axis must be x, y, z or custom, got {choice!r}")
    parts = [p for p in re.split(r"[\s,;()\[\]]+", (text or "").strip()) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3 or not all(np.isfinite(values)):
        raise ExplorerError(f"custom axis: type three numbers such as 1 1 0, got {text!r}")
    largest = max(abs(v) for v in values)
    if largest == 0.0:
        raise ExplorerError("custom axis: the direction must not be (0, 0, 0)")
    scaled = np.array(values) / largest  # first: the squares of 1e200 or 1e-170 overflow or vanish
    unit = tuple(round(float(v), 9) + 0.0 for v in scaled / np.linalg.norm(scaled))  # + 0.0: no negative zero
    label = "(" + ", ".join(f"{v:.3g}" for v in unit) + ")"
    return Axis(unit, label)


def check_steps(steps) -> int:
    """Steps per turn as an int in [2, MAX_STEPS]; :class:`ExplorerError` otherwise."""
    try:
        value = float(steps)
    except (TypeError, ValueError):
        value = float("nan")
    if not value.is_integer() or not 2 <= value <= MAX_STEPS:
        raise ExplorerError(f"steps must be a whole number from 2 to {MAX_STEPS}, got {steps!r}")
    return int(value)
