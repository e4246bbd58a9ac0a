"""``protein-care selfcheck``: property checks of the loss core on this machine."""

from __future__ import annotations

import argparse

from protein_care.commands._args import add_device_argument


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "selfcheck",
        help="check the CARE losses, rotations and Wahba solver on random data",
        description="Run the property checks of the loss core, rotation sampler and Wahba "
        "solver on random data on the chosen device and print a table.",
    )
    add_device_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from protein_care.devices import resolve_device
    from protein_care.selfcheck import format_table, run_selfcheck

    device = resolve_device(args.device)  # a bad --device exits 2 through cli.main
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"protein-care selfcheck on {device} ({name}), torch {torch.__version__}, seed {args.seed}")
    results = run_selfcheck(device, args.seed)
    print(format_table(results))
    failed = [r.name for r in results if not r.passed]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0
