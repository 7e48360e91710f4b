"""The `tinyasc` command as a user runs it: info, models, errors without tracebacks."""
import json
import subprocess
import sys

import pytest

from tinyasc.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "tinyasc", *args], capture_output=True, text=True)


@pytest.mark.parametrize("name,params,rounded", [("bc_resnet_asc_1", 8055, "8.1k"), ("bc_resnet_asc_8", 314970, "315k")])
def test_info_json_reports_counts_and_receptive_field(name, params, rounded, capsys):
    assert main(["info", name, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {"params", "nonzero_params", "macs", "receptive_field", "input_shape"} <= set(info)
    assert info["params"] == params and info["receptive_field"] == [109, 109]
    assert info["input_shape"] == [1, 1, 256, 334] and info["macs"] > 0


def test_info_text_and_models_listing(capsys):
    assert main(["info", "bc_resnet_asc_1", "--layers"]) == 0
    out = capsys.readouterr().out
    assert "8,055" in out and "109×109" in out and "stem.0.weight" in out
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "bc_resnet_asc_1" in out and "314,970" in out


def test_unknown_model_exits_nonzero_with_one_line_and_no_traceback():
    result = run("info", "resnet_huge")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("tinyasc: error: unknown model 'resnet_huge'; available: ")
    assert "bc_resnet_asc_1" in lines[0] and "bc_resnet_asc_8" in lines[0]


def test_console_script_help_runs():
    result = run("--help")
    assert result.returncode == 0 and "info" in result.stdout
