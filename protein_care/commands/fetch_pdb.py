"""``protein-care fetch-pdb``: download PDB entries into a verified local cache.

A thin layer over :func:`data_pipeline.fetch.fetch` and
:func:`data_pipeline.rcsb_search.search_entry_ids`: it gathers IDs (arguments,
``--ids-file``, an RCSB search), downloads them, prints a summary table and the
failures, and turns the report into an exit status.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

from data_pipeline.atomic_files import RunIOError
from data_pipeline.fetch import RCSB_FILES_URL, RCSB_HOLDINGS_URL, FetchReport, fetch
from data_pipeline.fetch_http import RetryPolicy
from data_pipeline.rcsb_ids import FORMATS, read_ids_file, split_valid_ids
from data_pipeline.rcsb_search import (
    RCSB_SEARCH_URL,
    SearchError,
    build_query,
    load_query,
    search_entry_ids,
)
from protein_care.commands._args import EXIT_USAGE, add_progress_argument, arg_error

PROG = "protein-care fetch-pdb"

EXIT_OK = 0  # every requested entry ended ok or cached
EXIT_ENTRIES_FAILED = 1  # some entries missing/obsolete/invalid/failed, or IDs rejected
# EXIT_USAGE (2, protein_care.commands._args): a bad argument, or nothing to do
EXIT_SEARCH_FAILED = 3  # the search service could not be reached or failed
EXIT_IO_ERROR = 4  # an I/O error (e.g. a full disk) stopped the run; files fetched so far are kept

EPILOG = f"""\
examples:
  {PROG} 1l2y 4hhb --out cache/pdb
  {PROG} --ids-file ids.txt --out cache/pdb --workers 16
  {PROG} --text kinase --max-resolution 2.0 --experimental-method xray --limit 200 --out cache/pdb
  {PROG} --query query.json --out cache/pdb
  {PROG} --ids-file ids.txt --mirror /data/wwpdb/divided --out cache/pdb   (offline)

files: DIR/{{ID}}.cif.gz (or .pdb.gz), each verified (gzip CRC, parses, >= 1 atom) and
written atomically; DIR/manifest.jsonl gets one JSON line per entry and run.
A re-run skips entries already cached and valid, so an interrupted run can be resumed.
Ctrl-C lets the downloads in flight finish (the manifest records them); a second Ctrl-C
stops at once (exit 130).

exit status:
  {EXIT_OK}  every requested entry ended ok or cached
  {EXIT_ENTRIES_FAILED}  some entries are missing, obsolete, invalid or failed, or inputs were not PDB IDs
  {EXIT_USAGE}  bad arguments, or nothing to do
  {EXIT_SEARCH_FAILED}  the RCSB search service could not be reached
  {EXIT_IO_ERROR}  an I/O error (e.g. a full disk) stopped the run; what was fetched is kept
"""


def _number(kind: type, minimum: float, strict: bool, what: str) -> Callable[[str], float]:
    def parse(text: str):  # noqa: ANN202
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        # NaN compares False with everything: it and inf must be refused explicitly.
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


_positive_int = _number(int, 1, False, "an integer >= 1")
_non_negative_int = _number(int, 0, False, "an integer >= 0")
_positive_float = _number(float, 0.0, True, "a number > 0")
_non_negative_float = _number(float, 0.0, False, "a number >= 0")


def _http_url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected an http(s) URL, got {text!r}")
    return text.rstrip("/")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``fetch-pdb`` on the CLI's subparsers and return its parser.

    Args:
        subparsers: from ``ArgumentParser.add_subparsers()``.
    """
    p = subparsers.add_parser(
        "fetch-pdb",
        help="download PDB entries (IDs, ID file or RCSB search) into a verified cache",
        description="Download PDB entries from RCSB (or copy them from a local wwPDB "
        "mirror) into a cache folder, verifying each file and writing it atomically.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inputs = p.add_argument_group("what to fetch (combined)")
    inputs.add_argument("ids", nargs="*", metavar="ID", help="PDB IDs: 1abc, 1ABC or pdb_00001abc")
    inputs.add_argument("--ids-file", metavar="FILE", help="file of IDs, one or more a line, '#' comments")
    inputs.add_argument("--query", metavar="FILE", help="RCSB Search API v2 JSON query (entry search)")
    inputs.add_argument("--text", help="search: full-text terms")
    inputs.add_argument("--max-resolution", type=_positive_float, metavar="ANGSTROM",
                        help="search: resolution_combined <= this")
    inputs.add_argument("--experimental-method", metavar="METHOD",
                        help='search: exptl.method, e.g. "X-RAY DIFFRACTION" (aliases: xray, em, nmr)')
    inputs.add_argument("--limit", type=_positive_int, metavar="N", help="search: at most N entries")

    where = p.add_argument_group("where from and to")
    where.add_argument("--out", required=True, metavar="DIR", help="cache folder (created if missing)")
    where.add_argument("--format", choices=FORMATS, default="cif", help="file format, gzipped (default: cif)")
    where.add_argument("--base-url", type=_http_url, default=RCSB_FILES_URL, metavar="URL",
                       help="file service; files at URL/{ID}.{format}.gz (default: %(default)s)")
    where.add_argument("--mirror", metavar="DIR",
                       help="local wwPDB mirror, divided layout (mmCIF/ab/1abc.cif.gz); no network used")
    where.add_argument("--search-url", type=_http_url, default=RCSB_SEARCH_URL, metavar="URL",
                       help="search service (default: %(default)s)")
    where.add_argument("--holdings-url", type=_http_url, default=RCSB_HOLDINGS_URL, metavar="URL",
                       help="removed-entries service asked on 404 (default: %(default)s)")

    how = p.add_argument_group("how")
    how.add_argument("--workers", type=_positive_int, default=8, metavar="N",
                     help="concurrent downloads (default: %(default)s)")
    how.add_argument("--timeout", type=_positive_float, default=30.0, metavar="SECONDS",
                     help="connect/read timeout per request (default: %(default)s)")
    how.add_argument("--retries", type=_non_negative_int, default=4, metavar="N",
                     help="retries of transient faults, exponential backoff (default: %(default)s)")
    how.add_argument("--backoff", type=_non_negative_float, default=0.5, metavar="SECONDS",
                     help="backoff factor: retry n waits about SECONDS*2^(n-1) (default: %(default)s)")
    add_progress_argument(how)
    p.set_defaults(func=run)
    return p


def _searched_ids(args: argparse.Namespace) -> list[str] | int:
    """IDs from --query/--text/... (empty list when no search); an int is an exit code."""
    request: dict = {}
    if args.query:
        try:
            request = load_query(args.query)  # its request_options (e.g. sort) are kept
        except OSError as exc:
            return arg_error(PROG, "--query", f"cannot read {args.query!r}: {exc.strerror or exc}")
        except ValueError as exc:
            return arg_error(PROG, "--query", f"{args.query!r} is not an RCSB entry search: {exc}")
    node = build_query(text=args.text, max_resolution=args.max_resolution,
                       experimental_method=args.experimental_method, base=request.get("query"))
    if node is None:
        if args.limit is not None:
            return arg_error(PROG, "--limit", "needs a search (--query, --text, --max-resolution "
                             "or --experimental-method)")
        return []
    policy = RetryPolicy(retries=args.retries, backoff_factor=args.backoff)
    try:
        ids = search_entry_ids({**request, "query": node}, url=args.search_url, limit=args.limit,
                               timeout=args.timeout, policy=policy)
    except SearchError as exc:
        if exc.refused:
            names = "--query" if args.query else "--text/--max-resolution/--experimental-method"
            return arg_error(PROG, names, f"search refused: {exc}")
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_SEARCH_FAILED
    print(f"search: {len(ids)} entries", file=sys.stderr)
    return ids


def run(args: argparse.Namespace) -> int:
    """Run ``fetch-pdb`` with parsed arguments; returns the exit status (see EPILOG)."""
    raw_ids = list(args.ids)
    if args.ids_file:
        try:
            raw_ids += read_ids_file(args.ids_file)
        except (OSError, UnicodeDecodeError) as exc:
            return arg_error(PROG, "--ids-file", f"cannot read {args.ids_file!r}: {exc}")
    if args.mirror is not None and not Path(args.mirror).is_dir():
        return arg_error(PROG, "--mirror", f"not a directory: {args.mirror!r}")
    searched = _searched_ids(args)
    if isinstance(searched, int):
        return searched
    raw_ids += searched

    ids, rejected = split_valid_ids(raw_ids)
    for raw, reason in rejected:
        print(f"rejected: {reason}", file=sys.stderr)
    if not ids:
        what = "no valid PDB IDs" if raw_ids else "no IDs given"
        print(f"{PROG}: nothing to do: {what} (give IDs, --ids-file, --query or --text)",
              file=sys.stderr)
        return EXIT_USAGE

    try:
        report = fetch(ids, args.out, format=args.format, base_url=args.base_url,
                       mirror=args.mirror, workers=args.workers, timeout=args.timeout,
                       retries=args.retries, progress=args.progress,
                       holdings_url=args.holdings_url, backoff_factor=args.backoff)
    except RunIOError as exc:  # during the run: not a bad --out
        partial = exc.partial
        if isinstance(partial, FetchReport):
            print(partial.summary())
            left = len(ids) - len(partial.results)
            stopped = (f" (the run stopped: {left} of {len(ids)} entries not attempted; a re-run resumes)" if left
                       else " (the files fetched are kept; a re-run records them as cached)")
        else:
            stopped = ""
        print(f"{PROG}: error: {exc}{stopped}", file=sys.stderr)
        return EXIT_IO_ERROR
    except OSError as exc:  # set-up: the folder or its manifest cannot be created
        return arg_error(PROG, "--out", f"cannot use {args.out!r}: {exc}")
    except ValueError as exc:  # fetch() names the bad setting (a check argparse missed)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    report.rejected = rejected

    print(report.summary())
    failures = report.failures
    if failures or rejected:
        print(f"\nnot fetched ({len(failures) + len(rejected)}):")
        for r in failures:
            print(f"  {r.id:<8} {r.status:<9} {r.reason}")
        for raw, _ in rejected:
            print(f"  {raw!r:<8} rejected  not a PDB ID")
    print(f"manifest: {report.manifest_path}")
    return EXIT_OK if report.ok else EXIT_ENTRIES_FAILED
