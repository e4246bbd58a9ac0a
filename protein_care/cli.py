"""The ``protein-care`` command line.

Each subcommand lives in its own module under :mod:`protein_care.commands` and exposes
``add_parser(subparsers)`` (which registers its arguments and sets ``func``) and the
function it runs. This file only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading
import warnings

from protein_care import __version__

# Module names under protein_care.commands, in the order `--help` lists them.
COMMANDS: tuple[str, ...] = (
    "selfcheck",
    "fetch_pdb",
    "build_dataset",
    "inspect_store",
    "train",
    "evaluate",
    "embed",
    "plot",
    "demo",
    "compare",
    "app",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="protein-care",
        description="Learn rotation-equivariant embeddings of protein structures with CARE.",
    )
    parser.add_argument("--version", action="version", version=f"protein-care {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"protein_care.commands.{name}").add_parser(subparsers)
    return parser


#: Third-party deprecation notices a user of the CLI cannot act on (torch_geometric 2.8
#: calls ``torch.jit.script`` at import time, which torch 2.10+ deprecates).
QUIET_WARNINGS = (r"`torch\.jit\.script` is deprecated",)


def main(argv: list[str] | None = None) -> int:
    for message in QUIET_WARNINGS:  # this process only; the library leaves the filters alone
        warnings.filterwarnings("ignore", message=message, category=FutureWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from protein_care.devices import UsageError

    try:
        return int(args.func(args) or 0)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        if _download_threads_alive():  # a second Ctrl-C while they finish: do not wait for them at exit
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        return 130
    except BrokenPipeError:
        return closed_pipe_exit()
    except OSError as error:  # a file that cannot be read or written: the error names it
        print(f"error: {error}", file=sys.stderr)
        return 1


def _download_threads_alive() -> bool:
    """Whether ``fetch-pdb``'s download threads, which the interpreter would wait for at
    exit, still run (after a second Ctrl-C); every ``finally`` has run by now."""
    from data_pipeline.fetch import THREAD_PREFIX

    return any(t.is_alive() and t.name.startswith(THREAD_PREFIX) for t in threading.enumerate())


def closed_pipe_exit() -> int:
    """Stop quietly when the output was piped into ``head`` and the like, which closed it:
    point stdout at /dev/null so that Python's flush at exit raises no second error, and
    return 141 (128 + SIGPIPE), the status a shell reports for such a command."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 141


if __name__ == "__main__":
    sys.exit(main())
