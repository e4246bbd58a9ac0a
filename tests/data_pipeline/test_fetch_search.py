"""RCSB Search API v2: query building, query files, pagination (data_pipeline.rcsb_search)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data_pipeline.fetch_http import RetryPolicy
from data_pipeline.rcsb_search import SearchError, build_query, load_query, search_entry_ids

try:
    from . import loopback_server as lb
except ImportError:  # tests/ is not a package: pytest put this folder on sys.path
    import loopback_server as lb

pytestmark = pytest.mark.timeout(60)
FAST = RetryPolicy(retries=1, backoff_factor=0.01, backoff_jitter=0.0)

FULL_TEXT = {"type": "terminal", "service": "full_text", "parameters": {"value": "lysozyme"}}
RESOLUTION = {"type": "terminal", "service": "text", "parameters": {
    "attribute": "rcsb_entry_info.resolution_combined", "operator": "less_or_equal", "value": 2.0}}
XRAY = {"type": "terminal", "service": "text", "parameters": {
    "attribute": "exptl.method", "operator": "exact_match", "value": "X-RAY DIFFRACTION"}}


def test_convenience_terms_are_and_combined_terminals() -> None:
    query = build_query(text="lysozyme", max_resolution=2, experimental_method="xray")
    assert query == {"type": "group", "logical_operator": "and", "nodes": [FULL_TEXT, RESOLUTION, XRAY]}


def test_single_term_is_a_bare_terminal_and_no_term_is_none() -> None:
    assert build_query(text="lysozyme") == FULL_TEXT
    assert build_query() is None
    method = build_query(experimental_method="Solution NMR")["parameters"]["value"]
    assert method == "SOLUTION NMR"


def test_query_file_is_combined_with_convenience_terms() -> None:
    combined = build_query(max_resolution=2.0, base=FULL_TEXT)
    assert combined["nodes"] == [FULL_TEXT, RESOLUTION]


def test_load_query_accepts_full_requests_and_bare_nodes(tmp_path: Path) -> None:
    full = tmp_path / "full.json"
    full.write_text(json.dumps({"query": FULL_TEXT, "return_type": "entry"}))
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(FULL_TEXT))
    assert load_query(full)["query"] == FULL_TEXT
    assert load_query(bare) == {"query": FULL_TEXT}


@pytest.mark.parametrize(
    ("content", "match"),
    [("not json", "Expecting value"), ("[1, 2]", "JSON object"),
     ('{"query": FT, "return_type": "polymer_entity"}', "return_type"), ('{"x": 1}', "type")],
)
def test_load_query_rejects_what_is_not_an_entry_search(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "q.json"
    path.write_text(content.replace("FT", json.dumps(FULL_TEXT)))
    with pytest.raises(ValueError, match=match):
        load_query(path)


@pytest.fixture
def server():
    with lb.LoopbackRCSB(max_requests=50) as srv:
        srv.search_hits = [f"{i + 1}X{j:02d}" for i in range(5) for j in range(5)]  # 25 hits
        yield srv
    assert not srv.over_budget


def test_pagination_follows_pages_until_all_hits(server) -> None:
    ids = search_entry_ids({"query": FULL_TEXT}, url=server.search_url, page_size=10, policy=FAST)
    assert ids == server.search_hits
    pages = [b["request_options"]["paginate"] for b in server.search_bodies]
    assert pages == [{"start": 0, "rows": 10}, {"start": 10, "rows": 10}, {"start": 20, "rows": 10}]
    for body in server.search_bodies:
        assert body["query"] == FULL_TEXT and body["return_type"] == "entry"


def test_pagination_stops_at_the_limit(server) -> None:
    request = {"query": FULL_TEXT, "request_options": {"sort": [{"sort_by": "score"}],
                                                       "return_all_hits": True}}
    ids = search_entry_ids(request, url=server.search_url, limit=15, page_size=10, policy=FAST)
    assert ids == server.search_hits[:15]
    options = [b["request_options"] for b in server.search_bodies]
    assert [o["paginate"] for o in options] == [{"start": 0, "rows": 10}, {"start": 10, "rows": 5}]
    assert all(o["sort"] == [{"sort_by": "score"}] and "return_all_hits" not in o for o in options)
    assert "paginate" not in request["request_options"]  # the caller's dict is not modified


def test_no_hits_is_an_empty_list(server) -> None:
    server.search_hits = []
    assert search_entry_ids(FULL_TEXT, url=server.search_url, policy=FAST) == []
    assert server.count("/search", "POST") == 1


def test_bad_query_is_refused(server) -> None:
    server.search_status = 400
    with pytest.raises(SearchError) as info:
        search_entry_ids(FULL_TEXT, url=server.search_url, policy=FAST)
    assert info.value.refused and "HTTP 400" in str(info.value)
    assert server.count("/search") == 1  # a 400 is not retried


def test_unreachable_service_is_not_a_refusal() -> None:
    with pytest.raises(SearchError) as info:
        search_entry_ids(FULL_TEXT, url=lb.closed_port_url(), policy=FAST, timeout=1.0)
    assert not info.value.refused and "unreachable" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"[]", "JSON list"),
        (b'[{"identifier": "1AKI"}]', "JSON list"),
        (b'"1AKI"', "JSON str"),
        (b"<html>busy</html>", "<html>busy</html>"),
        (b'{"total_count": 1, "result_set": [{"id": "1AKI"}]}', "identifier"),
    ],
)
def test_malformed_answer_is_a_search_error_quoting_it(server, raw: bytes, words: str) -> None:
    server.search_raw = raw
    with pytest.raises(SearchError) as info:
        search_entry_ids(FULL_TEXT, url=server.search_url, policy=FAST)
    assert not info.value.refused
    assert "unexpected answer from the search service" in str(info.value) and words in str(info.value)
