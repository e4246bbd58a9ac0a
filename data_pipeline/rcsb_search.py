"""Find PDB entries with the RCSB Search API (v2) and return their IDs.

A search request is JSON POSTed to the search service::

    {"query": <node>, "return_type": "entry",
     "request_options": {"paginate": {"start": 0, "rows": 100}}}

where a node is a ``terminal`` (one condition) or a ``group`` combining nodes with
``and``/``or``. The answer is ``{"total_count": N, "result_set": [{"identifier":
"4HHB", "score": ...}, ...]}`` (HTTP 200) or no body at all when nothing matches (HTTP
204). See https://search.rcsb.org/#search-api.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import requests

from data_pipeline.fetch_http import RetryPolicy, describe_error, make_session

__all__ = [
    "RCSB_SEARCH_URL",
    "SearchError",
    "build_query",
    "load_query",
    "search_entry_ids",
]

RCSB_SEARCH_URL = "https://search.rcsb.org/rcsbsearch/v2/query"

# Short names accepted for --experimental-method; anything else is used upper-cased.
METHOD_ALIASES: dict[str, str] = {
    "xray": "X-RAY DIFFRACTION",
    "x-ray": "X-RAY DIFFRACTION",
    "em": "ELECTRON MICROSCOPY",
    "cryo-em": "ELECTRON MICROSCOPY",
    "nmr": "SOLUTION NMR",
    "solid-state-nmr": "SOLID-STATE NMR",
}


class SearchError(Exception):
    """The search service refused the query or could not be reached.

    Attributes:
        refused: true when the service answered that the query is bad (HTTP 400),
            false for network faults and server errors.
    """

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


def _terminal(service: str, **parameters: Any) -> dict:
    return {"type": "terminal", "service": service, "parameters": parameters}


def build_query(
    *,
    text: str | None = None,
    max_resolution: float | None = None,
    experimental_method: str | None = None,
    base: dict | None = None,
) -> dict | None:
    """Build a search query node from convenience terms, all combined with ``and``.

    Args:
        text: full-text search terms (``full_text`` service).
        max_resolution: keep entries with ``rcsb_entry_info.resolution_combined`` less
            than or equal to this, in angstroms.
        experimental_method: ``exptl.method`` exact match, e.g. ``"X-RAY DIFFRACTION"``;
            short aliases (``xray``, ``em``, ``nmr``) are expanded.
        base: an existing query node (from ``--query``) to ``and`` with the terms.

    Returns:
        A query node, or ``None`` when no term and no base was given.
    """
    nodes: list[dict] = [base] if base else []
    if text:
        nodes.append(_terminal("full_text", value=text))
    if max_resolution is not None:
        nodes.append(
            _terminal(
                "text",
                attribute="rcsb_entry_info.resolution_combined",
                operator="less_or_equal",
                value=float(max_resolution),
            )
        )
    if experimental_method:
        method = METHOD_ALIASES.get(experimental_method.lower(), experimental_method.upper())
        nodes.append(_terminal("text", attribute="exptl.method", operator="exact_match", value=method))
    if not nodes:
        return None
    if len(nodes) == 1:
        return nodes[0]
    return {"type": "group", "logical_operator": "and", "nodes": nodes}


def load_query(path: str | Path) -> dict:
    """Read a search request or a bare query node from a JSON file.

    Args:
        path: the JSON file.

    Returns:
        A full request ``{"query": ..., ...}`` (a bare node is wrapped).

    Raises:
        OSError: unreadable file. ValueError: not JSON, or not an entry search.
    """
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    request = data if "query" in data else {"query": data}
    if not isinstance(request["query"], dict) or "type" not in request["query"]:
        raise ValueError('"query" must be a node with a "type" (terminal or group)')
    return_type = request.get("return_type", "entry")
    if return_type != "entry":
        raise ValueError(f'return_type must be "entry", got {return_type!r}')
    return request


def search_entry_ids(
    request: dict,
    *,
    url: str = RCSB_SEARCH_URL,
    limit: int | None = None,
    page_size: int = 1000,
    timeout: float = 30.0,
    policy: RetryPolicy | None = None,
    session: requests.Session | None = None,
) -> list[str]:
    """Run an entry search, following pages until ``limit`` IDs or all hits.

    Args:
        request: a full search request or a bare query node; ``return_type`` is set to
            ``entry`` and ``request_options.paginate`` is managed here (other request
            options, e.g. ``sort``, are kept).
        url: the search endpoint.
        limit: the most IDs to return (``None``: all hits).
        page_size: rows asked for per page.
        timeout: seconds per HTTP request.
        policy: retry settings (POST is retried on 429/5xx and connection faults).
        session: reuse a session (else one is made from ``policy``).

    Returns:
        The entry IDs in the service's order (duplicates removed).

    Raises:
        SearchError: HTTP 400 (``refused=True``) or a fault that outlasted the retries.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    body = copy.deepcopy(request if "query" in request else {"query": request})
    body["return_type"] = "entry"
    options = body.setdefault("request_options", {})
    options.pop("return_all_hits", None)  # we page explicitly
    own_session = session is None
    session = session or make_session(policy or RetryPolicy(), pool_size=1)
    ids: list[str] = []
    seen: set[str] = set()
    start = 0
    try:
        while limit is None or len(ids) < limit:
            rows = page_size if limit is None else min(page_size, limit - len(ids))
            options["paginate"] = {"start": start, "rows": rows}
            try:
                resp = session.post(url, json=body, timeout=timeout)
            except requests.RequestException as exc:
                raise SearchError(f"search service unreachable: {describe_error(exc)}") from None
            with resp:
                if resp.status_code == 204:  # no (more) hits
                    break
                if resp.status_code != 200:
                    detail = resp.text[:300].strip()
                    raise SearchError(
                        f"search service answered HTTP {resp.status_code}: {detail}",
                        refused=400 <= resp.status_code < 500,
                    )
                try:
                    page = resp.json()
                    if not isinstance(page, dict):  # e.g. a JSON array
                        raise TypeError(f"a JSON {type(page).__name__}, not an object")
                    hits = [str(hit["identifier"]) for hit in page.get("result_set", [])]
                    total = int(page.get("total_count", 0))
                except (ValueError, KeyError, TypeError) as exc:
                    body = " ".join(resp.text[:120].split())
                    raise SearchError(
                        f"unexpected answer from the search service ({type(exc).__name__}: {exc}): {body!r}"
                    ) from None
            for hit in hits:
                if hit not in seen:
                    seen.add(hit)
                    ids.append(hit)
            start += len(hits)
            if not hits or start >= total:
                break
    finally:
        if own_session:
            session.close()
    return ids[:limit] if limit is not None else ids
