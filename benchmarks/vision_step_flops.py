"""How close the vision training steps of ``bench_vision_step.py`` come to their arithmetic,
and what that leaves for issue 7's goal of ≥ 10× the release-style pipeline.

    uv run python benchmarks/vision_step_flops.py benchmarks/results/h100-2026-11-25/bench_vision_step.json ...

Reads the rows that ``bench_vision_step.py --out`` wrote on a GPU and prints two tables
(no GPU needed: the FLOPs are counted on the CPU):

1. per row, the network's share of the step (step ms − augmentation ms; for the release
   pipeline, − the time it waited for its views) and the TFLOP/s the encoder's forward and
   backward passes reach in it (``network_gflop_per_image`` × views × batch / network ms);
2. per architecture and batch, the CARE/release ratio measured, and its ceiling: the
   release step over the shortest CARE step those rates allow, i.e. the CARE step's FLOPs
   at the best network rate any row of that architecture reached on that GPU, plus the
   shortest CARE augmentation measured there.

A ceiling below 10 says that no input pipeline, however fast, meets the goal at that size
on that machine unless the convolutions themselves run faster than they did in any row.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vision_step import network_gflop_per_image  # noqa: E402

GOAL = 10.0
REQUIRED_KEYS = {"pipelines", "device", "date", "torch"}


def views_of(pipeline: str) -> int:
    return 2 if pipeline == "batched-simclr" else 4


def network_rows(result: dict, gflop: dict) -> list[dict]:
    """Each pipeline row with its network ms, GFLOP and network TFLOP/s."""
    rows = []
    for r in result["pipelines"]:
        net_ms = r["step_ms"] - r["augment_ms"]
        g = gflop[r["arch"]] * views_of(r["pipeline"]) * r["batch"]
        rows.append({**r, "network_ms": net_ms, "network_gflop": g, "network_tflop_per_s": g / net_ms})
    return rows


def ceilings(rows: list[dict]) -> list[dict]:
    """Per (arch, batch): measured CARE/release ratio and its FLOP ceiling (module docstring)."""
    out = []
    for arch in dict.fromkeys(r["arch"] for r in rows):
        best_rate = max(r["network_tflop_per_s"] for r in rows if r["arch"] == arch)
        for batch in dict.fromkeys(r["batch"] for r in rows if r["arch"] == arch):
            cell = [r for r in rows if r["arch"] == arch and r["batch"] == batch]
            release = next((r for r in cell if r["pipeline"] == "release-care"), None)
            care = [r for r in cell if r["pipeline"] not in ("release-care", "batched-simclr")]
            if release is None or not care:  # a cell without both sides has no ratio
                continue
            fastest = min(care, key=lambda r: r["step_ms"])
            floor_ms = release["network_gflop"] / best_rate + min(r["augment_ms"] for r in care)
            out.append({"arch": arch, "batch": batch, "release_ms": release["step_ms"],
                        "care_ms": fastest["step_ms"], "care_pipeline": fastest["pipeline"],
                        "measured_ratio": release["step_ms"] / fastest["step_ms"], "best_tflop_per_s": best_rate,
                        "floor_ms": floor_ms, "ceiling_ratio": release["step_ms"] / floor_ms})
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="JSON files written by bench_vision_step.py --out on a GPU")
    args = parser.parse_args(argv)
    results = []
    for path in args.results:
        try:
            result = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            parser.error(f"{path}: not a JSON file written by bench_vision_step.py --out ({error})")
        missing = sorted(REQUIRED_KEYS - set(result)) if isinstance(result, dict) else sorted(REQUIRED_KEYS)
        if missing:
            parser.error(f"{path}: not a JSON file written by bench_vision_step.py --out (no {', '.join(missing)})")
        results.append((path, result))
    archs = {r["arch"] for _, res in results for r in res["pipelines"]}
    gflop = {arch: network_gflop_per_image(arch, 64) for arch in sorted(archs)}
    print("GFLOP per image, forward + backward (32 px, width 64): "
          + ", ".join(f"{a} {g:.2f}" for a, g in gflop.items()))
    for path, res in results:
        rows = network_rows(res, gflop)
        print(f"\n{path}: {res['device']}, {res['date']}, torch {res['torch']}")
        print(f"{'pipeline':<17} {'arch':<9} {'batch':>5} {'step ms':>8} {'net ms':>7} {'GFLOP':>7} {'TFLOP/s':>8}")
        for r in rows:
            print(f"{r['pipeline']:<17} {r['arch']:<9} {r['batch']:>5} {r['step_ms']:>8.1f} {r['network_ms']:>7.1f} "
                  f"{r['network_gflop']:>7.0f} {r['network_tflop_per_s']:>8.0f}")
        print(f"\n{'arch':<9} {'batch':>5} {'release ms':>10} {'CARE ms':>8} {'ratio':>6} "
              f"{'best TFLOP/s':>12} {'floor ms':>8} {'ceiling':>7}  (goal >= {GOAL:g})")
        for c in ceilings(rows):
            print(f"{c['arch']:<9} {c['batch']:>5} {c['release_ms']:>10.1f} {c['care_ms']:>8.1f} "
                  f"{c['measured_ratio']:>5.1f}x {c['best_tflop_per_s']:>12.0f} {c['floor_ms']:>8.1f} "
                  f"{c['ceiling_ratio']:>6.1f}x")


if __name__ == "__main__":
    main()
