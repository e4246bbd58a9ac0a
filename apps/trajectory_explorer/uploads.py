"""Uploaded structures: checked, parsed with the pipeline's policy and kept per browser
session (each page has its own uploads; a bounded number per session and overall).

Memory: before the full parse, the text is read once in 1 MB pieces (gunzipped piece by
piece, never whole) and refused when it unpacks to more than :data:`DECOMPRESSION_FACTOR`
times the upload limit or holds more ATOM/HETATM records than :data:`RECORDS_PER_POINT`
per allowed point (:func:`check_text_size`). At most :data:`PARALLEL_PARSES` uploads are
then parsed at once in the whole process; another waits up to :data:`PARSE_WAIT_S`
seconds for its turn, then gets a "busy, try again" message.

    >>> uploads = SessionUploads(per_session=16, total=64)                          # doctest: +SKIP
    >>> protein = parse_upload(upload_name("1ubq.cif.gz"), raw, selection="ca", max_bytes=2**20,
    ...                        max_points=20_000)                                    # doctest: +SKIP
    >>> uploads.put(session, protein); uploads.get(session, protein.key)            # doctest: +SKIP
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import io
import re
import secrets
import tempfile
import threading
import zlib
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from protein_care import provenance
from apps.trajectory_explorer.cache import LRUCache
from apps.trajectory_explorer.inputs import ExplorerError

#: Upload file names the explorer accepts (case-insensitive); the content decides the format.
UPLOAD_SUFFIXES = (".cif", ".cif.gz", ".pdb", ".pdb.gz", ".ent", ".ent.gz")
DEFAULT_MAX_UPLOAD_MB = 20.0
#: Points an upload may hold (the encoders' memory grows with the cloud; --max-points).
DEFAULT_MAX_POINTS = 20_000
#: A gzipped upload may unpack to at most this many times the upload limit (20 MB: 120
#: MB of text; reading 120 MB of header lines took 600 MB at peak in the pipeline). The
#: 1,438 gzipped PDB/mmCIF files of shared/pdb unpack to 4.1 times their size (median);
#: each that unpacks to over 1 MB, to at most 5.2 times, so none of those is refused even
#: at an upload limit equal to its own size; only small NMR ensembles (up to 6.9) would be.
DECOMPRESSION_FACTOR = 6
#: ATOM/HETATM records (all models) an upload may hold per allowed point (--max-points),
#: counted before the full parse, whose memory grows with them. Single-model files of
#: shared/pdb hold at most 24 records per CA atom (median 8: side chains, hydrogens,
#: alternative locations, waters); NMR ensembles hold up to 600 but at most 43,000 records
#: in all, far below the 640,000 of the default --max-points.
RECORDS_PER_POINT = 32
#: Uploads parsed at once in the process (each holds its text and the parser's
#: structure, up to a few hundred MB); a request waits up to PARSE_WAIT_S seconds for a turn.
PARALLEL_PARSES = 2
PARSE_WAIT_S = 10.0
_PARSE_SLOTS = threading.BoundedSemaphore(PARALLEL_PARSES)
_PIECE_BYTES = 1 << 20
_RECORD_STARTS = (b"\nATOM", b"\nHETATM")  # PDB records and mmCIF _atom_site rows
UPLOAD_PREFIX = "upload:"
_SESSION = re.compile(r"[A-Za-z0-9_-]{16,64}")


@dataclass(frozen=True)
class Protein:
    """One cloud to show: from the store or an upload. ``coords`` (n, 3) float32 Å,
    ``features`` (n,) residue codes."""

    key: str
    label: str
    coords: np.ndarray
    features: np.ndarray
    source: str  # "store" or "upload"


def new_session_id() -> str:
    """An unguessable ID for one browser tab (kept in its sessionStorage)."""
    return secrets.token_urlsafe(18)


def valid_session(session) -> bool:
    return isinstance(session, str) and _SESSION.fullmatch(session) is not None


class SessionUploads(LRUCache):
    """Uploads by (session, key), least recently used dropped first: at most
    ``per_session`` in one session and ``total`` in all (thread-safe). Callers pass
    checked sessions (:func:`valid_session`)."""

    def __init__(self, per_session: int = 16, total: int = 64) -> None:
        if per_session < 1 or total < 1:
            raise ValueError(f"upload limits must be >= 1, got {per_session} per session and {total} in all")
        super().__init__(total)
        self.per_session, self.total = per_session, total

    def get(self, session, key: str) -> Protein | None:
        return self._get((session, key))[1]

    def put(self, session: str, protein: Protein) -> None:
        self._put((session, protein.key), protein)

    def _evict(self, key: tuple[str, str]) -> None:
        mine = [k for k in self._items if k[0] == key[0]]
        for old in mine[: max(0, len(mine) - self.per_session)]:
            del self._items[old]
        super()._evict(key)  # then the total

    def of(self, session) -> list[Protein]:
        """The session's uploads, least recently used first."""
        with self._lock:
            return [p for (s, _), p in self._items.items() if s == session]


def upload_name(filename) -> str:
    """The base name of an uploaded file; :class:`ExplorerError` unless it ends in one
    of :data:`UPLOAD_SUFFIXES`."""
    name = Path(str(filename or "")).name or "upload"
    if not name.lower().endswith(UPLOAD_SUFFIXES):
        raise ExplorerError(f"{name}: upload a structure file ending in .cif, .cif.gz, .pdb or .pdb.gz")
    return name


def upload_key(data: bytes) -> str:
    """Uploads are content-addressed: the same file is parsed once per session."""
    return f"{UPLOAD_PREFIX}{hashlib.sha256(data).hexdigest()[:16]}"


def decode_data_url(name: str, contents, max_bytes: int) -> bytes:
    """The bytes of a ``dcc.Upload`` data URL (``data:...;base64,...``); the size is
    checked before decoding."""
    if not isinstance(contents, str) or "," not in contents:
        raise ExplorerError(f"{name}: the browser sent no file content")
    header, _, payload = contents.partition(",")
    if not header.endswith(";base64"):
        raise ExplorerError(f"{name}: the browser sent the file in an unknown encoding")
    if len(payload) * 3 // 4 > max_bytes + 3:
        raise ExplorerError(
            f"{name}: about {format_size(len(payload) * 3 // 4)} is over the upload limit of {format_size(max_bytes)}"
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ExplorerError(f"{name}: the upload is not valid base64") from None


def parse_upload(name: str, data: bytes, *, selection: str, max_bytes: int, max_points: int,
                 key: str | None = None) -> Protein:
    """Parse an uploaded structure file (bytes) named ``name`` (from :func:`upload_name`)
    with the pipeline's policy; :class:`ExplorerError` with the reason for a bad size,
    content or point count. ``key`` is :func:`upload_key` of ``data`` when the caller
    has it already.

    The text's size and record count are checked first (:func:`check_text_size`); then,
    with one of the :data:`PARALLEL_PARSES` turns, the bytes are written to a private
    temporary folder, parsed as structure data only
    (:func:`data_pipeline.parse.try_read_structure`) and deleted."""
    from data_pipeline.parse import try_read_structure
    from data_pipeline.structure import ParseFailure

    if len(data) > max_bytes:
        raise ExplorerError(f"{name}: {format_size(len(data))} is over the upload limit of {format_size(max_bytes)}")
    if not data:
        raise ExplorerError(f"{name}: the file is empty")
    check_text_size(name, data, max_bytes=max_bytes, max_points=max_points)
    if not _PARSE_SLOTS.acquire(timeout=PARSE_WAIT_S):
        raise ExplorerError(f"{name}: the server is busy reading other uploads (at most {PARALLEL_PARSES} at a "
                            "time); try again in a moment")
    try:
        with tempfile.TemporaryDirectory(prefix="protein-care-upload-") as tmp:
            path = Path(tmp) / f"upload{_suffix(name)}"
            path.write_bytes(data)
            result = try_read_structure(path, selection=selection, max_bytes=max_bytes * DECOMPRESSION_FACTOR)
    finally:
        _PARSE_SLOTS.release()
    if isinstance(result, ParseFailure) or not result:
        reason = getattr(result, "reason", "unreadable").replace(str(path), name).replace(tmp, "")
        raise ExplorerError(f"{name}: not a readable structure file ({reason})")
    atoms = provenance.atoms(selection)
    if len(result) > max_points:
        raise ExplorerError(
            f"{name}: {len(result):,} {atoms} is over the limit of {max_points:,} points per upload (the encoders' "
            "memory grows with the cloud; start the app with a larger --max-points to allow it)"
        )
    stem = re.sub(r"(\.gz)?$", "", name, flags=re.I)
    stem = re.sub(r"\.(cif|pdb|ent)$", "", stem, flags=re.I)
    return Protein(key or upload_key(data), f"{stem} (uploaded, {len(result)} {atoms})",
                   np.asarray(result.coords, dtype=np.float32), np.asarray(result.residue_codes()), "upload")


def check_text_size(name: str, data: bytes, *, max_bytes: int, max_points: int) -> None:
    """:class:`ExplorerError` when the upload's text (gunzipped) is over
    :data:`DECOMPRESSION_FACTOR` × ``max_bytes`` or holds more than
    :data:`RECORDS_PER_POINT` × ``max_points`` ATOM/HETATM lines; read in pieces, and
    stopped at the first limit passed. A corrupt gzip stream ends the count: the parser
    then gives the reason."""
    max_text, max_records = max_bytes * DECOMPRESSION_FACTOR, max_points * RECORDS_PER_POINT
    size = records = 0
    tail = b"\n"  # the text starts a line; then the last bytes of the previous piece
    with closing(_text_pieces(data)) as pieces:
        for piece in pieces:
            size += len(piece)
            if size > max_text:
                raise ExplorerError(
                    f"{name}: unpacks to more than {format_size(max_text)}, {DECOMPRESSION_FACTOR} times the upload "
                    f"limit of {format_size(max_bytes)} (structure files unpack to about 4 times their gzip size; "
                    "start the app with a larger --max-upload-mb to allow it)")
            head, joint = piece[:6], tail + piece[:6]  # joint: the records cut by the previous piece's end
            records += sum(piece.count(s) + joint.count(s) - tail.count(s) - head.count(s) for s in _RECORD_STARTS)
            if records > max_records:
                raise ExplorerError(
                    f"{name}: more than {max_records:,} ATOM/HETATM records, too many to read with the limit of "
                    f"{max_points:,} points per upload ({RECORDS_PER_POINT} records per point; start the app with a "
                    "larger --max-points to allow it)")
            tail = (tail + piece)[-6:] if len(piece) < 6 else piece[-6:]


def _text_pieces(data: bytes) -> Iterator[bytes]:
    """The upload's text in pieces of at most 1 MB when it starts with the gzip magic (the
    members one after another, as the pipeline reads them), else ``data`` itself; a
    corrupt or truncated stream ends the pieces."""
    if data[:2] != b"\x1f\x8b":
        yield data
        return
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
        try:
            while piece := stream.read(_PIECE_BYTES):
                yield piece
        except (OSError, EOFError, zlib.error):  # gzip.BadGzipFile is an OSError
            return


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
