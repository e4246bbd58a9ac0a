"""``protein-care app``: the trajectory explorer in a browser — pick trained runs and a
protein (from the store or uploaded), turn it about any axis, and watch where its
embedding goes, CARE next to SimCLR.

    protein-care app --runs RUN [RUN ...] [--store STORE] [--host 127.0.0.1] [--port 8050]
        [--max-upload-mb 20] [--max-points 20000] [--device cpu] [--cache-size 256]

Without --store every run must have been trained on the first run's store (else exit 2:
the proteins shown would silently be another store's). With --store, runs trained on
another store are shown but warned about and marked in the page.

The app (``apps/trajectory_explorer``) is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import errno
import math
import sys

from protein_care.commands._args import at_least


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text}")
    return value


def _positive_mb(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value * 1024 * 1024 >= 1):
        raise argparse.ArgumentTypeError(f"expected a finite size in MB of at least one byte, got {text}")
    return value


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "app",
        help="interactive trajectory explorer in the browser (Dash)",
        description="Start the trajectory explorer: choose runs and a protein, rotate it about x, y, z or any "
        "direction, and see its embedding trajectory (2-D and 3-D PCA) next to its point cloud, the runs' "
        "evaluation numbers and training curves. Binds to 127.0.0.1 unless --host says otherwise.",
    )
    p.add_argument("--runs", nargs="+", required=True, metavar="RUN", help="run folders written by protein-care train")
    p.add_argument("--store", default=None,
                   help="store of the proteins to show (default: the runs' training store, which they must share; "
                   "runs trained on another store than --store are marked)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; the app has no authentication)")
    p.add_argument("--port", type=_port, default=8050, help="port to listen on (default: 8050; 0: a free one)")
    p.add_argument("--max-upload-mb", type=_positive_mb, default=20.0,
                   help="largest structure file accepted by the upload (default: 20)")
    p.add_argument("--max-points", type=at_least(1), default=20_000,
                   help="most points (atoms of the store's selection) an uploaded structure may have: the encoders' "
                   "memory grows with the cloud (default: 20000)")
    p.add_argument("--device", default="cpu", help="where the encoders run: cpu (default), auto or cuda[:N]")
    p.add_argument("--cache-size", type=at_least(1), default=256,
                   help="trajectories kept in memory, one per run, protein, axis and steps (default: 256)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from protein_care.devices import resolve_device

    device = resolve_device(args.device)  # a bad --device exits 2 through cli.main
    from apps.trajectory_explorer.data import ExplorerData, ExplorerError, RunLoadError, StoreLoadError
    from apps.trajectory_explorer.server import create_app, is_loopback, make_server

    try:
        data = ExplorerData.open(args.runs, args.store, device=device, cache_size=args.cache_size,
                                 max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_points=args.max_points)
    except RunLoadError as error:
        print(f"error: --runs {error.path}: {error.reason}", file=sys.stderr)
        return 2
    except StoreLoadError as error:
        print(f"error: {error.option + ': ' if error.option else ''}{error}", file=sys.stderr)
        return 2
    except ExplorerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for mismatch in data.mismatches:
        print(f"warning: --runs {mismatch.warning}", file=sys.stderr)
    if not is_loopback(args.host):
        print(f"warning: --host {args.host} is not a loopback address: anyone who can reach this machine on port "
              f"{args.port} can use the app (it has no authentication)", file=sys.stderr)
    try:
        server = make_server(create_app(data), args.host, args.port)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            print(f"error: --port {args.port}: already in use on {args.host} (another program, perhaps another "
                  "protein-care app, listens there); stop it or choose another --port (0: a free one)",
                  file=sys.stderr)
        else:
            print(f"error: --host {args.host} --port {args.port}: cannot listen there ({error.strerror or error})",
                  file=sys.stderr)
        return 2
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"trajectory explorer: {len(data.runs)} run(s), {len(data.ids)} proteins; "
          f"open http://{host}:{server.server_port}/ (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
