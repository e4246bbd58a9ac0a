"""Choosing a torch device from a user's ``--device`` argument."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")


class UsageError(ValueError):
    """A bad command-line value: :func:`protein_care.cli.main` prints the message, which
    names the argument, and exits with status 2."""


def resolve_device(name: str = "auto", flag: str = "--device {}") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error
    that says so; ``cuda:N`` and ``cpu`` are taken as given. ``flag`` is how the user
    wrote the choice (``"run.device={}"`` for a config key), for the error messages."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"{flag.format(name)}: no CUDA device is available on this machine "
                         f"(use {flag.format('cpu')})")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise UsageError(f"{flag.format(repr(name))} is not a device torch knows ({error})") from None
