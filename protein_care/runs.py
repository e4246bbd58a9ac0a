"""A training run's folder, and loading its encoder.

Layout of ``RUN/``::

    config.json              every CLI value and the derived ones (length_scale, …)
    checkpoint.pt            the latest full checkpoint (atomic; model, optimizer, RNG, data order)
    checkpoints/step_K.pt    snapshots at ¼, ½, ¾ and the end of training (model weights)
    metrics.jsonl            one JSON object per logging step

    >>> run = load_run("runs/care")                        # doctest: +SKIP
    >>> run.encoder, run.config["length_scale"], run.step  # doctest: +SKIP
    >>> baseline = initial_encoder(run.config)             # the same network at initialisation
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from data_pipeline.atomic_files import json_lines, write_text_atomic
from protein_care.models import Encoder, build_encoder

CONFIG_NAME = "config.json"
CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
SNAPSHOT_DIR = "checkpoints"
_SNAPSHOT = re.compile(r"^step_(\d+)\.pt$")


@dataclass
class Run:
    """A loaded run: ``encoder`` (eval mode, on the requested device), ``config``,
    ``step`` (optimizer steps of the loaded weights), ``dir``, and ``checkpoint`` (the
    file read, or None for the initial encoder)."""

    encoder: Encoder
    config: dict
    step: int
    dir: Path
    checkpoint: Path | None


def snapshot_path(run_dir, step: int) -> Path:
    return Path(run_dir) / SNAPSHOT_DIR / f"step_{step}.pt"


def list_snapshots(run_dir) -> list[tuple[int, Path]]:
    """``(step, path)`` of the snapshots of a run, by step."""
    folder = Path(run_dir) / SNAPSHOT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), folder / name) for name in os.listdir(folder) if (m := _SNAPSHOT.match(name))]
    return sorted(found)


def read_config(run_dir) -> dict:
    """The run's ``config.json``; ``ValueError`` naming the file when it is not a
    protein-care run's (a vision-benchmarks run folder also holds a ``config.json``)."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a protein-care run folder (no {CONFIG_NAME})")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not (isinstance(config, dict) and {"loss", "encoder", "dim"} <= set(config)):
        other = " (it is a vision-benchmarks run: use vision-benchmarks)" if isinstance(config, dict) and \
            "config_file" in config else ""
        raise ValueError(f"{path}: not the config of a protein-care run{other}")
    return config


def write_json_atomic(obj, path) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_metrics(run_dir) -> list[dict]:
    """The lines of ``metrics.jsonl`` (an empty list when there is none yet)."""
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        return []
    return json_lines(path.read_text(), "step")


def initial_encoder(config: dict) -> Encoder:
    """The run's architecture at initialisation, drawn with ``torch.manual_seed(seed)``
    inside a forked RNG (the caller's RNG state is untouched): the random-init baseline,
    and exactly the network the trainer starts from."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(config.get("seed", 0)))
        return build_encoder(config)


def resolve_checkpoint(run_dir, checkpoint=None) -> Path | None:
    """The file for ``checkpoint``: None or ``"latest"`` → ``checkpoint.pt``;
    ``"step_K"`` or an int K → ``checkpoints/step_K.pt``; ``"init"`` → None (initial
    weights); otherwise a path."""
    run_dir = Path(run_dir)
    if checkpoint in (None, "latest"):
        return run_dir / CHECKPOINT_NAME
    if checkpoint == "init":
        return None
    if isinstance(checkpoint, int):
        return snapshot_path(run_dir, checkpoint)
    if isinstance(checkpoint, str) and re.fullmatch(r"step_\d+", checkpoint):
        return run_dir / SNAPSHOT_DIR / f"{checkpoint}.pt"
    return Path(checkpoint)


def load_run(run_dir, device="cpu", *, checkpoint=None) -> Run:
    """Load a run's encoder (eval mode) from its latest checkpoint, a snapshot
    (``checkpoint="step_K"``), ``"init"`` (the initial encoder) or a path; files are read
    with ``torch.load(..., weights_only=True)``."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    path = resolve_checkpoint(run_dir, checkpoint)
    encoder = initial_encoder(config)
    step = 0
    if path is not None:
        if not path.is_file():
            available = ", ".join(f"step_{s}" for s, _ in list_snapshots(run_dir)) or "none"
            raise FileNotFoundError(f"{path}: no such checkpoint (snapshots: {available})")
        from protein_care.training.checkpoint import load_checkpoint

        payload = load_checkpoint(path)
        try:
            encoder.load_state_dict(payload["model"])
        except RuntimeError as error:  # weights of another architecture than config.json describes
            first = str(error).splitlines()[0]
            raise ValueError(f"{path}: its weights do not fit the encoder of {run_dir / CONFIG_NAME} ({first})") from None
        step = int(payload.get("step", 0))
    encoder.to(device).eval()
    return Run(encoder, config, step, run_dir, path)
