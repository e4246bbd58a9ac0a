"""The explorer's data service: runs, the store, uploads and a cache of embeddings.

Everything here is a thin layer over the library: runs are loaded with
:func:`protein_care.runs.load_run` (``weights_only=True``), trajectories come from
:func:`protein_care.trajectories.compute_trajectories`, uploads are parsed by
:func:`data_pipeline.parse.try_read_structure` with the pipeline's policy. The service
adds what an interactive page needs: labels (marking runs trained on another store,
:mod:`.provenance`), a search over cloud IDs, uploads kept per browser session
(:mod:`.uploads`), encoder batches within a memory budget (:mod:`.budget`), and an LRU
cache (:mod:`.cache`) so that each (run, protein, axis, steps) is embedded once; the
page's axis and steps are checked by :mod:`.inputs`.

    >>> data = ExplorerData.open(["runs/care", "runs/simclr"], "stores/pdb")   # doctest: +SKIP
    >>> traj = data.trajectory("0", "1A2K_r_u", inputs.parse_axis("custom", "1 1 0"), 64)  # doctest: +SKIP
    >>> traj.embeddings.shape   # (1 protein, 1 axis, 64 steps, dim)                   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from apps.trajectory_explorer import budget
from apps.trajectory_explorer.cache import LRUCache
from apps.trajectory_explorer.inputs import Axis, ExplorerError, check_steps
from protein_care.provenance import StoreMismatch, atoms, compare, store_selection
from apps.trajectory_explorer.uploads import (
    DEFAULT_MAX_POINTS, DEFAULT_MAX_UPLOAD_MB, UPLOAD_PREFIX, Protein, SessionUploads, decode_data_url,
    parse_upload, upload_key, upload_name, valid_session,
)

METRICS_JSON = "metrics.json"  # written by `protein-care evaluate` (evaluation.evaluate.METRICS_NAME)


class RunLoadError(ExplorerError):
    """A run folder that cannot be opened; ``path`` names it."""

    def __init__(self, path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


class StoreLoadError(ExplorerError):
    """The store cannot be opened or chosen; ``option`` is the command-line option the
    message is about (``"--store"`` when it was given, else None)."""

    def __init__(self, message: str, option: str | None = "--store") -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class RunEntry:
    """A loaded run with its page label; ``mismatch`` when it was trained on another
    store than the one shown (the label then says so)."""

    key: str
    label: str
    run: Any  # protein_care.runs.Run
    mismatch: StoreMismatch | None = None

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


class ExplorerData:
    """Runs, a store and uploads behind the page, with the embedding cache.

    Args:
        runs: loaded :class:`protein_care.runs.Run` objects, in page order.
        store: a :class:`data_pipeline.store.PointCloudStore` (or one with its reading
            interface: ``ids``, ``store[i]``, ``features(i)``).
        device: where the encoders run.
        cache_size: trajectories kept (one per run, protein, axis and steps).
        max_uploads: uploaded structures kept per browser session (least recently used
            dropped); ``max_uploads_total`` in all sessions.
        max_upload_bytes: the largest accepted upload.
        max_points: the most points an upload may hold.
    """

    def __init__(
        self,
        runs: Sequence,
        store,
        *,
        device="cpu",
        cache_size: int = 256,
        max_uploads: int = 16,
        max_uploads_total: int = 64,
        max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1024 * 1024),
        max_points: int = DEFAULT_MAX_POINTS,
    ) -> None:
        if not runs:
            raise ExplorerError("no runs to show")
        if max_upload_bytes < 1 or max_points < 1:
            raise ValueError(f"max_upload_bytes and max_points must be >= 1, got {max_upload_bytes}, {max_points}")
        self.store = store
        self.selection = store_selection(getattr(store, "meta", {}) or {})
        taken: set[str] = set()
        self.runs: dict[str, RunEntry] = {}
        for k, run in enumerate(runs):
            if "length_scale" not in run.config:
                raise RunLoadError(run.dir, "config.json has no length_scale (not a protein-care train run?)")
            mismatch = compare(run, store, self.selection)
            label = _run_label(run, taken) + (f" ⚠ {mismatch.note}" if mismatch else "")
            self.runs[str(k)] = RunEntry(str(k), label, run, mismatch)
        self.ids: list[str] = [str(i) for i in store.ids]
        self._position = {cloud_id: k for k, cloud_id in enumerate(self.ids)}
        self._lower = [i.lower() for i in self.ids]
        self.device = device
        self.cache = LRUCache(cache_size)
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_points = int(max_points)
        self._uploads = SessionUploads(max_uploads, max_uploads_total)

    @property
    def mismatches(self) -> list[StoreMismatch]:
        """Runs trained on another store than the one shown."""
        return [e.mismatch for e in self.runs.values() if e.mismatch is not None]

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, run_dirs: Sequence, store=None, *, device="cpu", **kwargs) -> ExplorerData:
        """Load ``run_dirs`` and open ``store`` (default: the first run's training
        store, which every run must then have been trained on). :class:`RunLoadError`
        names a run that cannot be loaded; :class:`StoreLoadError` says why the store
        cannot be opened or chosen. Runs trained on another store than an explicit
        ``store`` are marked (:attr:`mismatches`)."""
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
        explicit = store is not None
        config_json = Path(run_dirs[0]) / "config.json"
        if not explicit:
            store = training_store_path(runs[0].config)
            if not store:
                raise StoreLoadError(f"{config_json} names no training store; pass --store STORE", None)
        try:
            opened = store if not isinstance(store, (str, Path)) else PointCloudStore(store)
        except StoreError as error:
            if explicit:
                raise StoreLoadError(str(error)) from None
            raise StoreLoadError(f"{config_json} records the training store {store}, which cannot be opened "
                                 f"({error}); pass --store STORE to choose the proteins shown", None) from None
        if len(opened) == 0:
            raise StoreLoadError(f"{store}: the store holds no clouds", "--store" if explicit else None)
        data = cls(runs, opened, device=device, **kwargs)
        if not explicit and data.mismatches:
            others = ", ".join(f"{m.run_dir} on {m.run_store or '(not recorded)'}"
                               + (f" ({atoms(m.run_selection)})" if m.run_selection else "") for m in data.mismatches)
            raise StoreLoadError(
                f"the runs were trained on different stores: {run_dirs[0]} on {store} ({atoms(data.selection)}), "
                f"{others}. Pass --store STORE "
                "to choose the proteins shown (runs trained on another store are then marked in the page)", None)
        return data

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

    def uploads(self, session=None) -> list[Protein]:
        """The uploads of browser session ``session`` (none without one)."""
        return self._uploads.of(session) if valid_session(session) else []

    def protein(self, key: str, session=None) -> Protein:
        """The store cloud with ID ``key``, or the upload ``upload:<hash>`` of ``session``."""
        if key is None or key == "":
            raise ExplorerError("choose a protein")
        if key.startswith(UPLOAD_PREFIX):
            protein = self._uploads.get(session, key) if valid_session(session) else None
            if protein is None:
                raise ExplorerError("that upload is no longer in memory; upload the file again")
            return protein
        if key not in self._position:
            raise ExplorerError(f"protein {key!r} is not in the store")
        i = self._position[key]
        coords = np.array(self.store[i], dtype=np.float32)  # copies: store views are read-only
        if len(coords) == 0:  # a store may hold one (write_store accepts it): nothing to turn
            raise ExplorerError(f"protein {key!r} has no points in the store")
        features = np.array(self.store.features(i))
        return Protein(key, key, coords, features, "store")

    # ------------------------------------------------------------------ uploads

    def add_upload(self, filename: str, data: bytes, session=None) -> Protein:
        """Parse an uploaded structure file (bytes) and keep it for ``session``;
        :class:`ExplorerError` with the reason for a bad name, session, size, content or
        point count (see :func:`~apps.trajectory_explorer.uploads.parse_upload`)."""
        return self._keep_upload(upload_name(filename), data, session)

    def add_upload_contents(self, filename: str, contents: str, session=None) -> Protein:
        """:meth:`add_upload` from a ``dcc.Upload`` data URL (``data:...;base64,...``);
        its name and size are checked before decoding."""
        name = upload_name(filename)
        return self._keep_upload(name, decode_data_url(name, contents, self.max_upload_bytes), session)

    def _keep_upload(self, name: str, data: bytes, session) -> Protein:
        """The session's upload of ``data`` (parsed once per session: content-addressed);
        ``name`` is checked already."""
        if not valid_session(session):
            raise ExplorerError(f"{name}: this page has no upload session; reload the page")
        key = upload_key(data)  # hashed once: the lookup's and the new upload's key
        known = self._uploads.get(session, key)
        if known is not None:
            return known
        protein = parse_upload(name, data, selection=self.selection, max_bytes=self.max_upload_bytes,
                               max_points=self.max_points, key=key)
        self._uploads.put(session, protein)
        return protein

    # ------------------------------------------------------------------ embeddings

    def _resolve(self, protein: Protein | str, session) -> Protein:
        return protein if isinstance(protein, Protein) else self.protein(protein, session)

    def trajectory(self, run_key: str, protein: Protein | str, axis: Axis, steps: int, session=None):
        """The :class:`~protein_care.trajectories.Trajectories` of one protein (a
        :class:`Protein` or its key) rotated 0 → 2π about ``axis`` in ``steps`` steps,
        embedded by run ``run_key`` (cached), in batches within the memory budget of
        :func:`protein_care.embedding.clouds_per_batch`; a cloud over it is refused
        (:mod:`.budget`)."""
        entry = self.run(run_key)
        steps = check_steps(steps)
        protein = self._resolve(protein, session)
        budget.check_fits(entry.run.config, len(protein.coords), entry.label)

        def compute():
            from protein_care.trajectories import compute_trajectories

            traj = compute_trajectories(
                entry.run.encoder, {protein.key: protein.coords}, [protein.key], steps=steps, axes=[axis.spec],
                length_scale=entry.length_scale, features=[protein.features], device=self.device,
            )
            return dataclasses.replace(traj, axes=(axis.label,))  # a custom axis is named by its label

        traj = self.cache.get_or_compute((run_key, protein.key, axis.spec, steps), compute)
        # Uploads are content-addressed and shared: the name is this session's, not cached.
        return dataclasses.replace(traj, ids=[protein.label])

    def rotated_cloud(self, protein: Protein | str, axis: Axis, angle: float, session=None) -> np.ndarray:
        """The points of ``protein`` (a :class:`Protein` or its key) centred on their
        centroid and rotated by ``angle`` (radians) about ``axis``: ``(n, 3)``, the pose
        the encoder saw at that angle."""
        import torch

        from protein_care.augment import center_and_scale, rotate_per_cloud
        from protein_care.geometry import axis_rotation

        protein = self._resolve(protein, session)
        pos = torch.as_tensor(protein.coords, dtype=torch.float64)
        batch = torch.zeros(pos.shape[0], dtype=torch.long)
        rotation = axis_rotation(axis.spec, float(angle), dtype=torch.float64)  # (1, 3, 3)
        return rotate_per_cloud(center_and_scale(pos, batch, 1, 1.0), batch, rotation).numpy()


def _message(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if not isinstance(error, (FileNotFoundError, ValueError, ExplorerError)):
        text = f"{type(error).__name__}: {text}"
    return text if len(text) <= 300 else text[:297] + "..."
