"""The explorer's data service: runs, the store, uploads and a cache of embeddings.

Everything here is a thin layer over the library: runs are loaded with
:func:`protein_care.runs.load_run` (``weights_only=True``), trajectories come from
:func:`protein_care.trajectories.compute_trajectories`, uploads are parsed by
:func:`data_pipeline.parse.try_read_structure` with the pipeline's policy. The service
adds what an interactive page needs: labels, a search over cloud IDs, uploads kept in
memory, and an LRU cache (:mod:`~apps.trajectory_explorer.cache`) so that each (run,
protein, axis, steps) is embedded once; the page's axis and steps are checked by
:mod:`~apps.trajectory_explorer.inputs`.

    >>> data = ExplorerData.open(["runs/care", "runs/simclr"], "stores/pdb")   # doctest: +SKIP
    >>> traj = data.trajectory("0", "1A2K_r_u", inputs.parse_axis("custom", "1 1 0"), 64)  # doctest: +SKIP
    >>> traj.embeddings.shape   # (1 protein, 1 axis, 64 steps, dim)                   # doctest: +SKIP
"""

from __future__ import annotations

import ast
import base64
import binascii
import dataclasses
import hashlib
import json
import re
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from apps.trajectory_explorer.cache import LRUCache
from apps.trajectory_explorer.inputs import Axis, ExplorerError, check_steps

#: Upload file names the explorer accepts (case-insensitive); the content decides the format.
UPLOAD_SUFFIXES = (".cif", ".cif.gz", ".pdb", ".pdb.gz", ".ent", ".ent.gz")
DEFAULT_MAX_UPLOAD_MB = 20.0
#: A gzipped upload may unpack to at most this many times the upload limit.
DECOMPRESSION_FACTOR = 10
UPLOAD_PREFIX = "upload:"
METRICS_JSON = "metrics.json"  # written by `protein-care evaluate` (evaluation.evaluate.METRICS_NAME)


class RunLoadError(ExplorerError):
    """A run folder that cannot be opened; ``path`` names it."""

    def __init__(self, path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class StoreLoadError(ExplorerError):
    """The store cannot be opened."""


@dataclass(frozen=True)
class Protein:
    """One cloud to show: from the store or an upload. ``coords`` (n, 3) float32 Å,
    ``features`` (n,) residue codes."""

    key: str
    label: str
    coords: np.ndarray
    features: np.ndarray
    source: str  # "store" or "upload"


@dataclass(frozen=True)
class RunEntry:
    """A loaded run with its page label and the files written next to it."""

    key: str
    label: str
    run: Any  # protein_care.runs.Run

    @property
    def length_scale(self) -> float:
        return float(self.run.config["length_scale"])


# --------------------------------------------------------------------------- the service


def _run_label(run, taken: set[str]) -> str:
    loss = run.config.get("loss")
    label = f"{Path(run.dir).name} ({loss + ', ' if loss else ''}step {run.step})"
    base, k = label, 2
    while label in taken:
        label, k = f"{base} #{k}", k + 1
    taken.add(label)
    return label


def read_evaluation(run_dir) -> dict | None:
    """``RUN/metrics.json`` of ``protein-care evaluate`` (None when absent or unreadable)."""
    path = Path(run_dir) / METRICS_JSON
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def store_selection(meta: dict) -> str:
    """The atom selection a store was built with (``"ca"`` when it does not say)."""
    config = meta.get("config")
    if isinstance(config, str):
        try:
            config = ast.literal_eval(config)
        except (ValueError, SyntaxError):
            config = None
    selection = config.get("selection") if isinstance(config, dict) else meta.get("selection")
    return selection if selection in ("ca", "backbone", "heavy", "all") else "ca"


class ExplorerData:
    """Runs, a store and uploads behind the page, with the embedding cache.

    Args:
        runs: loaded :class:`protein_care.runs.Run` objects, in page order.
        store: a :class:`data_pipeline.store.PointCloudStore` (or one with its reading
            interface: ``ids``, ``store[i]``, ``features(i)``).
        device: where the encoders run.
        cache_size: trajectories kept (one per run, protein, axis and steps).
        max_uploads: uploaded structures kept in memory (least recently used dropped).
        max_upload_bytes: the largest accepted upload.
    """

    def __init__(
        self,
        runs: Sequence,
        store,
        *,
        device="cpu",
        cache_size: int = 256,
        max_uploads: int = 16,
        max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1024 * 1024),
    ) -> None:
        if not runs:
            raise ExplorerError("no runs to show")
        if max_upload_bytes < 1:
            raise ValueError(f"max_upload_bytes must be >= 1, got {max_upload_bytes}")
        taken: set[str] = set()
        self.runs: dict[str, RunEntry] = {}
        for k, run in enumerate(runs):
            if "length_scale" not in run.config:
                raise RunLoadError(run.dir, "config.json has no length_scale (not a protein-care train run?)")
            self.runs[str(k)] = RunEntry(str(k), _run_label(run, taken), run)
        self.store = store
        self.ids: list[str] = [str(i) for i in store.ids]
        self._position = {cloud_id: k for k, cloud_id in enumerate(self.ids)}
        self._lower = [i.lower() for i in self.ids]
        self.device = device
        self.cache = LRUCache(cache_size)
        self.max_uploads = max_uploads
        self.max_upload_bytes = int(max_upload_bytes)
        self.selection = store_selection(getattr(store, "meta", {}) or {})
        self._uploads: OrderedDict[str, Protein] = OrderedDict()
        self._uploads_lock = threading.Lock()

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, run_dirs: Sequence, store=None, *, device="cpu", **kwargs) -> ExplorerData:
        """Load ``run_dirs`` and open ``store`` (default: the first run's training
        store). :class:`RunLoadError` names a run that cannot be loaded;
        :class:`StoreLoadError` says why the store cannot be opened."""
        from data_pipeline.store import PointCloudStore, StoreError
        from protein_care.evaluation.evaluate import training_store_path
        from protein_care.runs import load_run

        if not run_dirs:
            raise ExplorerError("no runs given")
        runs = []
        for run_dir in run_dirs:
            if not Path(run_dir).exists():
                raise RunLoadError(run_dir, "no such folder")
            try:
                runs.append(load_run(run_dir, device))
            except Exception as error:  # noqa: BLE001 - any failure names the run
                raise RunLoadError(run_dir, _message(error)) from None
        if store is None:
            store = training_store_path(runs[0].config)
            if not store:
                raise StoreLoadError(f"{run_dirs[0]}: the run's config names no store; pass --store")
        try:
            opened = store if not isinstance(store, (str, Path)) else PointCloudStore(store)
        except StoreError as error:
            raise StoreLoadError(str(error)) from None
        if len(opened) == 0:
            raise StoreLoadError(f"{store}: the store holds no clouds")
        return cls(runs, opened, device=device, **kwargs)

    # ------------------------------------------------------------------ lookups

    def run_options(self) -> list[dict]:
        return [{"label": entry.label, "value": key} for key, entry in self.runs.items()]

    def run(self, key: str) -> RunEntry:
        if key not in self.runs:
            raise ExplorerError(f"unknown run {key!r}")
        return self.runs[key]

    def evaluation(self, key: str) -> dict | None:
        """The run's ``metrics.json`` (read on each call: an evaluation may finish while
        the app runs); None when there is none."""
        return read_evaluation(self.run(key).run.dir)

    def curves(self, key: str) -> list[dict]:
        """The run's ``metrics.jsonl`` lines (read on each call)."""
        from protein_care.runs import read_metrics

        try:
            return read_metrics(self.run(key).run.dir)
        except (OSError, ValueError):
            return []

    def search_ids(self, query: str | None, limit: int = 100) -> list[str]:
        """Cloud IDs containing ``query`` (case-insensitive), those starting with it
        first, at most ``limit``; the first ``limit`` IDs for an empty query."""
        q = (query or "").strip().lower()
        if not q:
            return self.ids[:limit]
        starts = [i for i, low in zip(self.ids, self._lower) if low.startswith(q)]
        if len(starts) >= limit:
            return starts[:limit]
        inside = [i for i, low in zip(self.ids, self._lower) if q in low and not low.startswith(q)]
        return (starts + inside)[:limit]

    def in_store(self, key) -> bool:
        return key in self._position

    def uploads(self) -> list[Protein]:
        with self._uploads_lock:
            return list(self._uploads.values())

    def protein(self, key: str) -> Protein:
        """The store cloud with ID ``key``, or the upload ``upload:<hash>``."""
        if key is None or key == "":
            raise ExplorerError("choose a protein")
        if key.startswith(UPLOAD_PREFIX):
            with self._uploads_lock:
                if key not in self._uploads:
                    raise ExplorerError("that upload is no longer in memory; upload the file again")
                self._uploads.move_to_end(key)
                return self._uploads[key]
        if key not in self._position:
            raise ExplorerError(f"protein {key!r} is not in the store")
        i = self._position[key]
        coords = np.array(self.store[i], dtype=np.float32)  # copies: store views are read-only
        features = np.array(self.store.features(i))
        return Protein(key, key, coords, features, "store")

    # ------------------------------------------------------------------ uploads

    def add_upload(self, filename: str, data: bytes) -> Protein:
        """Parse an uploaded structure file (bytes) with the pipeline's policy and keep
        it; :class:`ExplorerError` with the reason for a bad name, size or content.

        The bytes are written to a private temporary folder, parsed as structure data
        only (:func:`data_pipeline.parse.try_read_structure`) and deleted."""
        from data_pipeline.parse import try_read_structure
        from data_pipeline.structure import ParseFailure

        name = Path(str(filename or "")).name or "upload"
        check_upload_name(name)
        if len(data) > self.max_upload_bytes:
            raise ExplorerError(
                f"{name}: {format_size(len(data))} is over the upload limit of {format_size(self.max_upload_bytes)}"
            )
        if not data:
            raise ExplorerError(f"{name}: the file is empty")
        digest = hashlib.sha256(data).hexdigest()[:16]
        key = f"{UPLOAD_PREFIX}{digest}"
        with self._uploads_lock:
            if key in self._uploads:
                self._uploads.move_to_end(key)
                return self._uploads[key]
        with tempfile.TemporaryDirectory(prefix="protein-care-upload-") as tmp:
            path = Path(tmp) / f"upload{_suffix(name)}"
            path.write_bytes(data)
            result = try_read_structure(
                path, selection=self.selection, max_bytes=self.max_upload_bytes * DECOMPRESSION_FACTOR
            )
        if isinstance(result, ParseFailure) or not result:
            reason = getattr(result, "reason", "unreadable").replace(str(path), name).replace(tmp, "")
            raise ExplorerError(f"{name}: not a readable structure file ({reason})")
        stem = re.sub(r"(\.gz)?$", "", name, flags=re.I)
        stem = re.sub(r"\.(cif|pdb|ent)$", "", stem, flags=re.I)
        protein = Protein(key, f"{stem} (uploaded, {len(result)} {self.selection.upper()} atoms)",
                          np.asarray(result.coords, dtype=np.float32), np.asarray(result.residue_codes()), "upload")
        with self._uploads_lock:
            self._uploads[key] = protein
            while len(self._uploads) > self.max_uploads:
                self._uploads.popitem(last=False)
        return protein

    def add_upload_contents(self, filename: str, contents: str) -> Protein:
        """:meth:`add_upload` from a ``dcc.Upload`` data URL (``data:...;base64,...``);
        the size is checked before decoding."""
        name = Path(str(filename or "")).name or "upload"
        check_upload_name(name)
        if not isinstance(contents, str) or "," not in contents:
            raise ExplorerError(f"{name}: the browser sent no file content")
        header, _, payload = contents.partition(",")
        if not header.endswith(";base64"):
            raise ExplorerError(f"{name}: the browser sent the file in an unknown encoding")
        if len(payload) * 3 // 4 > self.max_upload_bytes + 3:
            raise ExplorerError(
                f"{name}: about {format_size(len(payload) * 3 // 4)} is over the upload limit of "
                f"{format_size(self.max_upload_bytes)}"
            )
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise ExplorerError(f"{name}: the upload is not valid base64") from None
        return self.add_upload(name, data)

    # ------------------------------------------------------------------ embeddings

    def trajectory(self, run_key: str, protein_key: str, axis: Axis, steps: int):
        """The :class:`~protein_care.trajectories.Trajectories` of one protein rotated
        0 → 2π about ``axis`` in ``steps`` steps, embedded by run ``run_key`` (cached)."""
        entry = self.run(run_key)
        steps = check_steps(steps)
        protein = self.protein(protein_key)

        def compute():
            from protein_care.trajectories import compute_trajectories

            traj = compute_trajectories(
                entry.run.encoder, {protein.key: protein.coords}, [protein.key], steps=steps, axes=[axis.spec],
                length_scale=entry.length_scale, features=[protein.features], device=self.device,
            )
            # Name the axis by its label (a custom axis is a vector) and the protein by its label.
            return dataclasses.replace(traj, axes=(axis.label,), ids=[protein.label])

        return self.cache.get_or_compute((run_key, protein.key, axis.spec, steps), compute)

    def rotated_cloud(self, protein_key: str, axis: Axis, angle: float) -> np.ndarray:
        """The protein's points centred on their centroid and rotated by ``angle``
        (radians) about ``axis``: ``(n, 3)``, the pose the encoder saw at that angle."""
        import torch

        from protein_care.augment import center_and_scale, rotate_per_cloud
        from protein_care.geometry import axis_rotation

        protein = self.protein(protein_key)
        pos = torch.as_tensor(protein.coords, dtype=torch.float64)
        batch = torch.zeros(pos.shape[0], dtype=torch.long)
        rotation = axis_rotation(axis.spec, float(angle), dtype=torch.float64)  # (1, 3, 3)
        return rotate_per_cloud(center_and_scale(pos, batch, 1, 1.0), batch, rotation).numpy()


def check_upload_name(name: str) -> None:
    if not name.lower().endswith(UPLOAD_SUFFIXES):
        raise ExplorerError(f"{name}: upload a structure file ending in .cif, .cif.gz, .pdb or .pdb.gz")


def _suffix(name: str) -> str:
    low = name.lower()
    for suffix in sorted(UPLOAD_SUFFIXES, key=len, reverse=True):
        if low.endswith(suffix):
            return suffix
    return ""


def format_size(n: int) -> str:
    """A byte count as kB (under 1 MB) or MB, for messages (the page's upload guard
    writes sizes the same way)."""
    return f"{n / 1048576:.1f} MB" if n >= 1048576 else f"{n / 1024:.0f} kB"


def _message(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if not isinstance(error, (FileNotFoundError, ValueError, ExplorerError)):
        text = f"{type(error).__name__}: {text}"
    return text if len(text) <= 300 else text[:297] + "..."
