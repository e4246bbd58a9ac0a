"""``vision-benchmarks``: pretrain, probe, evaluate and report the paper's image experiments.

    vision-benchmarks pretrain --config digits_care --out runs/digits_care [--set optim.epochs=10 ...]
    vision-benchmarks linear-probe runs/digits_care [--set probe.epochs=10]
    vision-benchmarks evaluate runs/digits_care        # kNN, Wahba/γ_f/cos figures → runs/digits_care/figures
    vision-benchmarks report runs/* [--out report.md]
    vision-benchmarks sweep runs/* --out sweep/      # λ sweep and ablation figures
    vision-benchmarks download cifar10 --root ./data
    vision-benchmarks configs

Data-parallel pretraining: ``torchrun --nproc_per_node N -m vision_benchmarks.cli pretrain ...``
(see ``vision_benchmarks/distributed.py``).

``--config`` takes a file or the name of a shipped config (``vision-benchmarks configs``
lists them); see ``vision_benchmarks/configs/_base.toml`` for every key.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from protein_care.commands._args import output_file_problem, output_folder_problem

def _check_output(problem: str | None) -> None:
    """Refuse an output path of the wrong kind before any work (see protein_care.commands._args)."""
    if problem:
        raise ValueError(problem)


def _run_config(run: Path, overrides) -> dict:
    """The config of a finished vision run (defaults filled in, ``overrides`` applied);
    a protein-care run folder is refused by name (:func:`vision_benchmarks.runs.read_run_config`)."""
    from vision_benchmarks.config import apply_overrides, fill_defaults, validate
    from vision_benchmarks.runs import read_run_config

    cfg = fill_defaults(read_run_config(run))
    apply_overrides(cfg, overrides)
    validate(cfg)
    return cfg


def _restore(run: Path, overrides):
    """Config (with ``overrides``), data, method (with the checkpoint's weights),
    augmentation and device of a finished run."""
    import torch

    from protein_care.devices import resolve_device
    from vision_benchmarks.train import DEVICE_FLAG, build_all, load_checkpoint, load_data

    cfg = _run_config(run, overrides)
    device = resolve_device(cfg["run"]["device"], DEVICE_FLAG)
    if cfg["run"]["threads"]:
        torch.set_num_threads(cfg["run"]["threads"])
    data = load_data(cfg).to(device)
    method, augment = build_all(cfg, data, device)
    checkpoint = load_checkpoint(run, device)
    if checkpoint["epoch"] < cfg["optim"]["epochs"]:
        raise ValueError(f"{run}: its checkpoint is at epoch {checkpoint['epoch']} of {cfg['optim']['epochs']}; "
                         f"finish it first with the pretrain command that started it (--config {cfg['config_file']} "
                         f"--out {run} and the same --set values)")
    method.load_state_dict(checkpoint["model"])
    return cfg, data, method, augment, device


def _update_results(run: Path, values: dict) -> dict:
    from data_pipeline.atomic_files import write_text_atomic
    from vision_benchmarks.train import RESULTS, read_json

    path = run / RESULTS
    results = read_json(path) if path.is_file() else {}
    results.update(values)
    write_text_atomic(path, json.dumps(results, indent=2))
    return results


def cmd_pretrain(args) -> int:
    from vision_benchmarks.config import load_config
    from vision_benchmarks.train import pretrain

    cfg = load_config(args.config, args.set)
    results = pretrain(cfg, args.out)
    if "knn_top1" not in results:  # a rank > 0 under torchrun: rank 0 reports
        return 0
    print(f"kNN top-1 {results['knn_top1']:.2f}% (random init {results['knn_top1_random_init']:.2f}%), "
          f"{results['timings']['train_seconds']:.0f} s of training; results in {Path(args.out) / 'results.json'}")
    return 0


def cmd_linear_probe(args) -> int:
    from vision_benchmarks.evaluate import linear_probe_seeds

    run = Path(args.run)
    cfg, data, method, augment, device = _restore(run, args.set)
    amp = cfg["run"]["amp"] and device.type == "cuda"
    probe = linear_probe_seeds(method.encoder.backbone, data, augment, cfg["probe"], amp=amp,
                               progress=cfg["run"]["progress"])
    values = {"linear_probe_top1": probe, "probe_config": cfg["probe"]}
    print(f"linear probe top-1 {probe['mean']:.2f} ± {probe['std']:.2f}% over seeds {probe['seeds']}")
    if cfg["probe"]["random_init"]:  # the baseline: the run's network before its first step
        from vision_benchmarks.train import build_all

        initial, _ = build_all(cfg, data, device)
        baseline = linear_probe_seeds(initial.encoder.backbone, data, augment, cfg["probe"], amp=amp,
                                      progress=cfg["run"]["progress"])
        values["linear_probe_top1_random_init"] = baseline
        print(f"random-init baseline {baseline['mean']:.2f} ± {baseline['std']:.2f}%")
    _update_results(run, values)
    return 0


def cmd_evaluate(args) -> int:
    from vision_benchmarks.evaluate import knn_top1

    run = Path(args.run)
    cfg, data, method, augment, device = _restore(run, args.set)
    amp = cfg["run"]["amp"] and device.type == "cuda"
    knn = knn_top1(method.encoder.backbone, data, augment, k=cfg["knn"]["k"],
                   temperature=cfg["knn"]["temperature"], amp=amp)
    _update_results(run, {"knn_top1": knn, "knn_config": cfg["knn"]})
    print(f"kNN top-1 {knn:.2f}% (k={cfg['knn']['k']}, temperature={cfg['knn']['temperature']})")
    if args.knn_only:
        return 0
    from vision_benchmarks.measurements import EVALUATION, measure_run

    evaluation = measure_run(run, cfg, method, data, augment, amp=amp)
    s = evaluation["summary"]
    gamma = "–" if s["gamma_mean"] is None else f"{s['gamma_mean']:.4g} (median {s['gamma_median']:.4g})"
    print(f"{s['n']} augmentations on {evaluation['images']} test images: Wahba error mean {s['wahba_mean']:.4f}, "
          f"max {s['wahba_max']:.4f}; γ_f mean {gamma}; {len(evaluation['training'])} point(s) over training")
    if "mean_overlap" in evaluation["flowers"]:
        print(f"Flowers-102 colour-jitter retrieval: mean top-{evaluation['flowers']['k']} overlap "
              f"{evaluation['flowers']['mean_overlap']:.2f}")
    print(f"wrote {run / EVALUATION} and {', '.join(evaluation['figures'].values())}")
    return 0


def cmd_sweep(args) -> int:
    from vision_benchmarks.sweep import write_sweep

    _check_output(output_folder_problem(args.out, "--out"))
    summary = write_sweep(args.runs, args.out)
    for name, path in summary["figures"].items():
        print(f"{name}: {path}")
    return 0


def cmd_report(args) -> int:
    from vision_benchmarks.report import report

    _check_output(output_file_problem(args.out, "--out"))
    text = report(args.runs)
    if args.out:
        from data_pipeline.atomic_files import write_text_atomic

        write_text_atomic(Path(args.out), text)
    print(text, end="")
    return 0


def cmd_download(args) -> int:
    from vision_benchmarks.data import download_dataset

    _check_output(output_folder_problem(args.root, "--root"))
    download_dataset(args.name, args.root)
    print(f"{args.name} is ready under {args.root}")
    return 0


def cmd_configs(args) -> int:
    from vision_benchmarks.config import CONFIG_DIR, available_configs

    for name in available_configs():
        print(name)
    print(f"(in {CONFIG_DIR})", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vision-benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    set_help = "override a config value, e.g. --set optim.epochs=10 (repeatable)"

    p = sub.add_parser("pretrain", help="pretrain an encoder (resumes when --out holds a checkpoint)")
    p.add_argument("--config", required=True, help="a TOML file or a shipped config name, e.g. digits_care")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help=set_help)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("linear-probe", help="linear probe on frozen backbone features (mean ± std over seeds)")
    p.add_argument("run")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help=set_help)
    p.set_defaults(func=cmd_linear_probe)

    p = sub.add_parser("evaluate", help="kNN accuracy and the paper's measurements (Wahba, γ_f, cos, Flowers-102) "
                                        "of a run → RUN/evaluation.json, RUN/figures/")
    p.add_argument("run")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help=set_help)
    p.add_argument("--knn-only", action="store_true", help="only recompute the kNN accuracy")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("sweep", help="figures over several runs: λ sweep (Fig. 8), loss ablations (Fig. 7), "
                                     "and their measurements side by side")
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", required=True, help="folder for sweep.json and the HTML figures")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="table of runs against the paper's Table 1")
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", help="also write the Markdown here")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("download", help="download CIFAR10/CIFAR100/STL10 with torchvision and build the cache")
    p.add_argument("name", choices=["cifar10", "cifar100", "stl10"])
    p.add_argument("--root", default="./data")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("configs", help="list the shipped configs")
    p.set_defaults(func=cmd_configs)
    return parser


def main(argv=None) -> int:
    from vision_benchmarks.config import ConfigError
    from vision_benchmarks.data import DatasetNotFound

    from protein_care.cli import closed_pipe_exit

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DatasetNotFound, FileNotFoundError, ValueError) as error:
        print(f"vision-benchmarks {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # an OSError too: before the clause below
        return closed_pipe_exit()
    except OSError as error:  # a path the command cannot write or read, e.g. a folder given as a file
        where = f"{error.filename}: {error.strerror}" if error.filename and error.strerror else error
        print(f"vision-benchmarks {args.command}: error: {where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vision-benchmarks {args.command}: interrupted{_resume_hint(args)}", file=sys.stderr)
        return 130


def _resume_hint(args) -> str:
    """For an interrupted ``pretrain``: where it will continue from."""
    if args.command != "pretrain":
        return ""
    from vision_benchmarks.train import CHECKPOINT

    checkpoint = Path(args.out) / CHECKPOINT
    if not checkpoint.is_file():
        return "; no checkpoint was written yet (run.checkpoint_every), so the same command starts it again"
    return (f"; the same command resumes it from {checkpoint} (written every run.checkpoint_every epochs, "
            "so the epochs since the last one are trained again)")


if __name__ == "__main__":
    sys.exit(main())
