"""Run folders of ``vision-benchmarks pretrain``.

A vision run's ``config.json`` is the resolved config (sections ``run``, ``method``,
``optim``...); a protein-care run folder holds a flat ``config.json`` (``encoder``,
``store``, ``length_scale``...) and its own ``checkpoint.pt``. :func:`read_run_config`
tells them apart, so that a folder of the other tool is one clear error, never defaults
filled into a foreign config; :func:`check_run_folder` refuses a ``pretrain --out`` of
the wrong kind before any work starts. (The other output paths: ``protein_care.commands._args``.)
"""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_FILE = "config.json"
#: Sections that every config written by ``pretrain`` has.
SECTIONS = ("run", "method", "optim")
#: Top-level keys of a protein-care run's config.json.
PROTEIN_CARE_KEYS = ("encoder", "store", "length_scale")


def foreign_config(cfg, run: Path) -> str | None:
    """None when ``cfg`` (a parsed config.json) is a vision-benchmarks run config, else why not."""
    if isinstance(cfg, dict) and all(isinstance(cfg.get(section), dict) for section in SECTIONS):
        return None
    if isinstance(cfg, dict) and any(key in cfg for key in PROTEIN_CARE_KEYS):
        return (f"{run} holds a protein-care run, not a vision-benchmarks run (give a folder written by "
                "`vision-benchmarks pretrain`)")
    return (f"{run} is not a vision-benchmarks run: its {CONFIG_FILE} has no {'/'.join(SECTIONS)} sections "
            "(give a folder written by `vision-benchmarks pretrain`)")


def read_run_config(run: str | Path) -> dict:
    """The parsed ``RUN/config.json`` of a vision run, as written (no defaults filled in);
    FileNotFoundError without one, ValueError for one that is damaged or another tool's."""
    run = Path(run)
    path = run / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run} a folder written by `vision-benchmarks pretrain`?")
    try:
        cfg = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    why = foreign_config(cfg, run)
    if why:
        raise ValueError(why)
    return cfg


def check_run_folder(run: str | Path) -> None:
    """Refuse a ``pretrain`` output that is a file, or a folder of another tool's run."""
    run = Path(run)
    if run.exists() and not run.is_dir():
        raise ValueError(f"{run} is a file, not a run folder (use another --out)")
    if (run / CONFIG_FILE).exists():
        read_run_config(run)
