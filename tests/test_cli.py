"""The command line: help for every subcommand, one-line errors, the allocator fix, JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.cli import build_parser
from cnnlab.runtime import ALLOCATOR_ENVIRONMENT, REEXEC_MARKER

CONSOLE_SCRIPT = Path(sys.executable).with_name("cnnlab")


def _run(*arguments, environment=None):
    env = {key: value for key, value in os.environ.items() if key not in ALLOCATOR_ENVIRONMENT and key != REEXEC_MARKER}
    env.update(environment or {})
    return subprocess.run([sys.executable, "-m", "cnnlab", *arguments], capture_output=True, text=True, env=env, timeout=120)


def _subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help(command):
    result = _run(command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: cnnlab {command}")


def test_bad_input_is_one_line_without_traceback(tmp_path):
    result = _run("prepare", str(tmp_path / "nowhere"), "--out", str(tmp_path / "cache"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "nowhere" in lines[0] and "--data" in lines[0]
    result = _run("prepare", str(tmp_path), "--out", str(tmp_path / "cache"), "--size", "big")
    assert result.returncode == 2 and "--size" in result.stderr and "Traceback" not in result.stderr


def test_the_command_applies_the_allocator_fix_itself():
    result = _run("info", "--json", "--no-backend")
    info = json.loads(result.stdout)
    assert info["allocator_tuned"] is True
    assert info["allocator_environment"] == ALLOCATOR_ENVIRONMENT
    opted_out = json.loads(_run("info", "--json", "--no-backend", environment={"CNNLAB_ALLOCATOR": "system"}).stdout)
    assert opted_out["allocator_tuned"] is False


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="the cnnlab console script is not installed in this environment")
def test_console_script_and_backend_defaults():
    env = {key: value for key, value in os.environ.items() if key not in ALLOCATOR_ENVIRONMENT and key != "KERAS_BACKEND"}
    result = subprocess.run([str(CONSOLE_SCRIPT), "info", "--json"], capture_output=True, text=True, env=env, timeout=120)
    info = json.loads(result.stdout)
    assert info["backend"] == "torch" and info["image_data_format"] == "channels_first"
    assert info["allocator_tuned"] is True


def test_survey_json_on_a_folder(small_kaggle_folder):
    result = _run("survey", str(small_kaggle_folder), "--json")
    report = json.loads(result.stdout)
    assert report["per_class"] == {"cat": 12, "dog": 12}
    text = _run("survey", "--data", str(small_kaggle_folder)).stdout
    assert "per class: cat 12, dog 12" in text


def test_data_from_the_environment(small_kaggle_folder):
    result = _run("survey", "--json", environment={"CNNLAB_DATA": str(small_kaggle_folder)})
    assert json.loads(result.stdout)["images"] == 24
    missing = _run("survey", environment={"CNNLAB_DATA": ""})
    assert missing.returncode == 2 and "CNNLAB_DATA" in missing.stderr
