"""The protein-care command line: entry point, help, version, selfcheck."""

import subprocess
import sys

import pytest

from protein_care import __version__
from protein_care.cli import COMMANDS, build_parser, main


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    for name in COMMANDS:
        assert name.replace("_", "-") in help_text


def test_every_subcommand_has_help():
    parser = build_parser()
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args([name.replace("_", "-"), "--help"])
        assert exit_info.value.code == 0


def test_selfcheck_passes_on_cpu(capsys):
    assert main(["selfcheck", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "Haar SO(3)" in out and " NO" not in out


def test_selfcheck_on_missing_cuda_is_a_clear_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert main(["selfcheck", "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_console_script_runs_in_a_subprocess():
    result = subprocess.run(
        [sys.executable, "-m", "protein_care.cli", "--version"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and __version__ in result.stdout


def test_a_command_that_imports_torch_geometric_prints_no_third_party_deprecation_notice(tmp_path):
    """torch_geometric's import-time torch.jit.script calls warn under torch 2.10+: the
    CLI hides that notice (QUIET_WARNINGS), so its stderr holds only its own error."""
    code = ("import sys, protein_care.cli as c; code = c.main(['train', '--store', sys.argv[1], '--out', sys.argv[2]]); "
            "sys.exit(code if 'torch_geometric' in sys.modules else 99)")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "missing"), str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr  # the bad --store, after torch_geometric was imported
    assert result.stderr.strip().splitlines() == [f"error: --store: {tmp_path / 'missing'}: no store here (not a directory)"]


def test_building_the_parser_does_not_import_torch():
    """`protein-care --help` must start fast: no subcommand imports torch to register."""
    code = "import sys, protein_care.cli as c; c.build_parser(); sys.exit('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, "a subcommand imports torch at parser construction"


def test_evaluate_cli_names_match_the_library():
    from protein_care.commands import evaluate as command
    from protein_care.evaluation import evaluate as library

    assert command.SPLITS == library.SPLITS and command.METRICS_NAME == library.METRICS_NAME


def test_output_into_a_closed_pipe_stops_quietly(tmp_path):
    import numpy as np

    from data_pipeline.store_writer import CloudRecord, write_store

    write_store([CloudRecord("c0", np.zeros((5, 3)), np.zeros(5, np.uint8), {"group": "g"})], tmp_path / "s")
    proc = subprocess.Popen([sys.executable, "-m", "protein_care.cli", "inspect-store", str(tmp_path / "s")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    proc.stdout.close()  # as `| head` does, before the command writes anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and "Traceback" not in err and "Broken pipe" not in err, err
