"""Checkpoints readable with ``torch.load(..., weights_only=True)``.

A checkpoint is a plain dict of tensors, ints, floats, strings, lists and dicts:
``model`` (state dict), ``optimizer``, ``scheduler``, ``rng`` (torch CPU and CUDA
states, numpy's and Python's as tensors), ``step`` (optimizer steps done), ``epoch``
and ``batch_in_epoch`` (the next batch to take: the data-order state), and
``elapsed_s``. The trainer writes it with :func:`data_pipeline.atomic_files.write_torch_atomic`
(a temporary file in the same folder, fsync'ed and renamed over the old one), so a
killed process leaves the old file or the new one.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read (truncated, not a checkpoint); names the file."""


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary code); a file that
    torch cannot read raises :class:`CheckpointError` naming it."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"{path}: not a readable checkpoint, perhaps truncated "
                              f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})") from None
    if not isinstance(payload, dict) or "model" not in payload:
        raise CheckpointError(f"{path}: not a protein-care checkpoint (no model weights in it)")
    return payload


def rng_state() -> dict:
    """Every global RNG state as tensors (so ``weights_only`` loading accepts it)."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_cached_gauss": float(np_state[4]),
        "python_version": int(py_version),
        "python_internal": torch.tensor(py_internal, dtype=torch.int64),
        "python_gauss": py_gauss,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` recorded."""
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(
        ("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
         state["numpy_has_gauss"], state["numpy_cached_gauss"])
    )
    random.setstate((state["python_version"], tuple(int(v) for v in state["python_internal"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DistributedDataParallel and/or ``torch.compile``."""
    while True:
        if hasattr(model, "module"):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model
