"""Arguments and usage errors shared by the subcommands (argparse only: building the
CLI parser must not import torch).

Not a subcommand itself: :data:`protein_care.cli.COMMANDS` does not list it.
"""

from __future__ import annotations

import argparse
import sys

EXIT_USAGE = 2  # a bad argument: the status argparse exits with


def arg_error(prog: str, argument: str, message: str) -> int:
    """Report a bad ``argument`` as argparse does (``PROG: error: argument ARG: MESSAGE``
    on stderr) and return :data:`EXIT_USAGE`, for checks argparse cannot make."""
    print(f"{prog}: error: argument {argument}: {message}", file=sys.stderr)
    return EXIT_USAGE


def at_least(minimum: int):  # noqa: ANN201
    """An argparse type: an integer >= ``minimum`` (a non-integer gets the same message)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def output_file_problem(path: str | None, flag: str) -> str | None:
    """Why ``path`` cannot be written as a file (a folder there, or a file where its
    folder should be), checked before the work that produces it; None when it can."""
    from pathlib import Path

    if path is None:
        return None
    target = Path(path)
    if target.is_dir():
        return f"{flag} {path}: a folder, expected a file name"
    blocker = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        return f"{flag} {path}: {blocker} is a file, not a folder"
    return None


def output_folder_problem(path: str | None, flag: str) -> str | None:
    """Why ``path`` cannot be used as an output folder (a file there, or above it); None
    when it can (it may not exist yet)."""
    from pathlib import Path

    if path is None:
        return None
    blocker = next((p for p in (Path(path), *Path(path).parents) if p.exists() and not p.is_dir()), None)
    return None if blocker is None else f"{flag} {path}: a file is in the way ({blocker} is a file, not a folder)"


def add_progress_argument(parser) -> None:
    """``--progress/--no-progress``; ``None`` (the default) leaves the choice to whether
    stderr is a terminal."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar on stderr (default: only when stderr is a terminal)")


def add_device_argument(parser, default: str = "auto") -> None:
    """``--device``, read by :func:`protein_care.devices.resolve_device` when the command runs."""
    parser.add_argument("--device", default=default, help=f"auto (CUDA if available), cpu or cuda[:N] (default: {default})")


def add_runs_arguments(parser, *, runs_help: str, out_help: str, store_help: str) -> None:
    """``RUN [RUN ...]``, ``--out`` (required) and ``--store``, whose default (``None``) is
    the first run's training store."""
    parser.add_argument("runs", nargs="+", metavar="RUN", help=runs_help)
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--store", default=None, help=f"{store_help} (default: the first run's training store)")
