"""HTTP for :mod:`data_pipeline.fetch`: a pooled ``requests`` session whose adapter
retries with urllib3's :class:`~urllib3.util.Retry`, a download that only returns bodies
that verify, and the RCSB holdings lookup for removed (obsolete) entries.

Who retries what:

* urllib3 (mounted on the session): refused or reset connections, timeouts before the
  response headers, and statuses 429/500/502/503/504, with exponential backoff plus
  jitter, honouring ``Retry-After`` on 429/503.
* :func:`download_verified`: what urllib3 cannot see because it happens after the
  headers - a connection reset or stall mid-body, a truncated stream, a body that does
  not verify (HTML served with 200, bad CRC). It retries those by advancing a Retry
  built from the same :class:`RetryPolicy` (``increment`` + ``sleep``), so the count
  and the backoff follow the same settings.
* Nobody: 404/410 (permanent; the caller asks the holdings service instead) and other
  4xx statuses.

The two budgets are separate: a file that alternates header-level and body-level faults
can cost up to ``(retries + 1) ** 2`` requests; one kind of fault costs ``retries + 1``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import HTTPError, MaxRetryError, ProtocolError
from urllib3.util import Retry

from data_pipeline.fetch_verify import EntryMismatch, VerificationError, verify_structure_bytes

__all__ = [
    "RCSB_FILES_URL",
    "RCSB_HOLDINGS_URL",
    "RETRY_STATUSES",
    "DownloadError",
    "RetryPolicy",
    "make_session",
    "download_verified",
    "lookup_removed",
    "describe_error",
]

RCSB_FILES_URL = "https://files.rcsb.org/download"
RCSB_HOLDINGS_URL = "https://data.rcsb.org/rest/v1/holdings/removed"
RETRY_STATUSES: tuple[int, ...] = (429, 500, 502, 503, 504)
_CHUNK = 1 << 16


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry transient faults.

    The wait before retry ``n`` (n >= 2; the first retry is immediate, as in urllib3) is
    ``min(backoff_max, backoff_factor * 2**(n-1) + U(0, backoff_jitter))`` seconds, or
    the server's ``Retry-After`` (capped at ``retry_after_max``) on 429/503.

    Args:
        retries: retries after the first attempt (0 = try once).
        backoff_factor: base of the exponential backoff, in seconds.
        backoff_jitter: upper bound of the uniform random delay added, in seconds.
        backoff_max: longest wait between two attempts, in seconds.
        retry_after_max: longest ``Retry-After`` honoured, in seconds.
    """

    retries: int = 4
    backoff_factor: float = 0.5
    backoff_jitter: float = 0.25
    backoff_max: float = 30.0
    retry_after_max: float = 120.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        for name in ("backoff_factor", "backoff_jitter", "backoff_max", "retry_after_max"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def to_urllib3(self) -> Retry:
        """The equivalent urllib3 ``Retry`` (GET, HEAD and POST are retried)."""
        kwargs: dict = {}
        if "retry_after_max" in inspect.signature(Retry.__init__).parameters:
            kwargs["retry_after_max"] = int(self.retry_after_max)  # urllib3 >= 2.6
        return Retry(
            total=self.retries,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "HEAD", "POST"}),
            backoff_factor=self.backoff_factor,
            backoff_jitter=self.backoff_jitter,
            backoff_max=self.backoff_max,
            respect_retry_after_header=True,
            raise_on_status=False,  # hand back the last 5xx response when exhausted
            **kwargs,
        )


def make_session(policy: RetryPolicy, pool_size: int = 10) -> requests.Session:
    """A ``requests.Session`` with ``policy`` mounted for http and https.

    Args:
        policy: the retry settings.
        pool_size: connections kept per host (use at least the number of workers).
    """
    session = requests.Session()
    adapter = HTTPAdapter(
        max_retries=policy.to_urllib3(), pool_connections=4, pool_maxsize=max(1, pool_size)
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = "protein-care-fetch (data_pipeline; python-requests)"
    return session


class DownloadError(Exception):
    """A download that did not produce a verified body.

    Attributes:
        status: ``"missing"`` (404/410), ``"invalid"`` (bodies never verified) or
            ``"failed"`` (transient faults outlasted the retries, or another status).
        reason: a one-line explanation.
        http_status: the last HTTP status seen, if any.
    """

    def __init__(self, status: str, reason: str, http_status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.http_status = http_status


def describe_error(exc: BaseException) -> str:
    """A short one-line description of a requests/urllib3 exception."""
    inner: BaseException | None = exc.args[0] if exc.args else None
    if isinstance(inner, MaxRetryError) and inner.reason is not None:
        inner = inner.reason
        return f"{type(exc).__name__} after retries: {type(inner).__name__}: {inner}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]


def download_verified(
    session: requests.Session,
    url: str,
    *,
    fmt: str,
    timeout: float,
    policy: RetryPolicy,
    pdb_id: str | None = None,
) -> bytes:
    """GET ``url`` and return its body once it verifies as a gzipped structure (of entry
    ``pdb_id`` when given).

    Args:
        session: from :func:`make_session` (its adapter retries connection faults and
            retryable statuses).
        url: the file's URL.
        fmt: ``"cif"`` or ``"pdb"``, for verification.
        timeout: seconds allowed to connect and for each read from the socket.
        policy: the same retry settings the session was built with; used for faults
            after the headers (see the module docstring).
        pdb_id: the entry the body must be; another entry's file is ``invalid`` at
            once (not retried: the server would send it again).

    Returns:
        The compressed bytes exactly as served.

    Raises:
        DownloadError: see its ``status``.
    """
    retry = policy.to_urllib3()
    while True:
        try:
            # Identity encoding: we want the stored .gz bytes, not a re-decoded stream.
            resp = session.get(
                url, stream=True, timeout=timeout, headers={"Accept-Encoding": "identity"}
            )
        except requests.RequestException as exc:  # urllib3 already retried these
            raise DownloadError("failed", describe_error(exc)) from None
        with resp:
            code = resp.status_code
            if code in (404, 410):
                raise DownloadError("missing", f"HTTP {code}", http_status=code)
            if code != 200:
                note = " (retries exhausted)" if code in RETRY_STATUSES else ""
                raise DownloadError("failed", f"HTTP {code} {resp.reason}{note}", code)
            try:
                body = b"".join(resp.raw.stream(_CHUNK, decode_content=False))
                verify_structure_bytes(body, fmt, pdb_id)
                return body
            except EntryMismatch as exc:
                raise DownloadError("invalid", f"served body: {exc}", http_status=200) from None
            except VerificationError as exc:
                final, reason = "invalid", f"invalid body: {exc}"
            except (requests.RequestException, HTTPError, OSError) as exc:
                # HTTPError: urllib3's base (ProtocolError, ReadTimeoutError, ...)
                final, reason = "failed", f"body interrupted: {describe_error(exc)}"
        # urllib3's Retry only covers faults up to the response headers. Faults in the
        # body (reset, stall, truncation, a body that does not verify) are retried here
        # by advancing our own Retry of the same policy: same count, same backoff.
        try:
            retry = retry.increment(method="GET", url=url, error=ProtocolError(reason))
        except MaxRetryError:
            raise DownloadError(final, f"{reason} (retries exhausted)", http_status=200) from None
        retry.sleep()


def lookup_removed(
    session: requests.Session, holdings_url: str, pdb_id: str, *, timeout: float
) -> dict | None:
    """Ask the RCSB holdings service whether ``pdb_id`` was removed from the PDB.

    ``GET {holdings_url}/{pdb_id}`` answers 404 for entries that were never removed and
    otherwise JSON of the form (RCSB Data API, ``rcsb_repository_holdings_removed``)::

        {"rcsb_id": "1P38",
         "rcsb_repository_holdings_removed": {
             "id_codes_replaced_by": ["5UOJ"], "remove_date": "2017-...", ...}}

    Args:
        session: from :func:`make_session`.
        holdings_url: base URL, e.g. :data:`RCSB_HOLDINGS_URL`.
        pdb_id: a normalised ID.
        timeout: seconds per request.

    Returns:
        ``None`` when the entry was not removed, else
        ``{"replaced_by": [ids...], "remove_date": str | None}``.

    Raises:
        requests.RequestException, ValueError: the service could not be asked or gave
            an unexpected answer.
    """
    resp = session.get(f"{holdings_url.rstrip('/')}/{pdb_id}", timeout=timeout)
    with resp:
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        payload = resp.json()
    if not isinstance(payload, dict):
        raise ValueError("holdings answer is not a JSON object")
    removed = payload.get("rcsb_repository_holdings_removed") or {}
    if not isinstance(removed, dict):
        raise ValueError("holdings answer lacks rcsb_repository_holdings_removed")
    replaced = removed.get("id_codes_replaced_by") or []
    if isinstance(replaced, str):
        replaced = [replaced]
    return {
        "replaced_by": [str(x).upper() for x in replaced],
        "remove_date": removed.get("remove_date"),
    }
