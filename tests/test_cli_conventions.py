"""One convention for every subcommand, checked over all of them: --format where the output is
data, the same names for the same things, every default shown in --help, and the exit codes
(0 success, 1 some inputs failed and were reported, 2 usage: nothing was done)."""

from __future__ import annotations

import argparse

import pytest

from cnnlab.cli import build_parser, run
from cnnlab.cli.common import DefaultsShown

DATA_COMMANDS = {"info", "survey", "models", "evaluate", "compare", "predict"}  # they print data
# One name per thing: these were renamed and live on only as hidden aliases.
RETIRED = {"--json", "--max-epochs"}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return dict(action.choices)


def visible_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {option: action for action in parser._actions if action.help != argparse.SUPPRESS
            for option in action.option_strings}


ALL = sorted(subcommands())


@pytest.mark.parametrize("name", ALL)
def test_every_default_is_shown_in_help(name):
    parser = subcommands()[name]
    formatter = parser.formatter_class(parser.prog)
    assert isinstance(formatter, DefaultsShown)
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or not action.option_strings:
            continue
        if action.default not in (None, False, argparse.SUPPRESS) and not isinstance(action, argparse._HelpAction):
            assert "default" in formatter._get_help_string(action), (name, action.option_strings)
    assert "(default" in parser.format_help() or all(
        action.default in (None, False, argparse.SUPPRESS) for action in parser._actions if action.option_strings
        and not isinstance(action, argparse._HelpAction))


@pytest.mark.parametrize("name", ALL)
def test_the_same_names_for_the_same_things(name):
    options = visible_options(subcommands()[name])
    assert not RETIRED & set(options), f"cnnlab {name} shows a retired option: {RETIRED & set(options)}"
    if name in DATA_COMMANDS:
        assert "--format" in options and {"table", "json"} <= set(options["--format"].choices), name
    if "--data" in options:
        assert "photo" in options["--data"].help.lower(), f"cnnlab {name}: --data names folders of photos"
    if "--cache" in options:
        assert "cache" in options["--cache"].help.lower()
    if "--epochs" in options:
        assert options["--epochs"].type is int


def test_retired_spellings_still_work_as_aliases():
    parser = build_parser()
    assert parser.parse_args(["models", "--json"]).format == "json"
    assert parser.parse_args(["reproduce", "--max-epochs", "2"]).max_epochs == 2
    assert parser.parse_args(["evaluate", "RUN", "--data", "CACHE"]).cache == "CACHE"


@pytest.mark.parametrize("arguments", [
    ["evaluate", "{missing}"], ["predict", "{missing}", "photo.jpg"], ["explain", "{missing}", "photo.jpg", "--out", "{tmp}/x"],
    ["export", "{missing}", "--format", "onnx", "--out", "{tmp}/m.onnx"], ["report", "{missing}", "--out", "{tmp}/r.html"],
    ["serve", "{missing}"], ["compare", "{missing}"],
    ["train", "conv1", "--cache", "{missing}", "--out", "{tmp}/run"], ["survey", "{missing}"],
    ["prepare", "{missing}", "--out", "{tmp}/cache"],
])
def test_a_missing_input_is_one_line_and_exit_status_2(arguments, tmp_path, capsys):
    filled = [part.format(missing=tmp_path / "no-such-folder", tmp=tmp_path) for part in arguments]
    assert run(filled) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"cnnlab {arguments[0]}: error:") and "\n" not in error and "Traceback" not in error


@pytest.fixture(scope="module")
def a_run(tiny_cache, tmp_path_factory):
    from training_helpers import make_config, quiet_train

    run_folder = tmp_path_factory.mktemp("conventions") / "run"
    quiet_train(make_config(tiny_cache, run_folder, epochs=1))
    return run_folder


@pytest.mark.parametrize("arguments", [
    ["prepare", "{photos}", "--out", "{blocked}/cache"],
    ["train", "conv1", "--any-input-size", "--cache", "{cache}", "--out", "{blocked}/run", "--epochs", "1"],
    ["explain", "{run}", "{photo}", "--out", "{blocked}/explained"],
    ["filters", "{photo}", "--out", "{blocked}/filters"],
    ["report", "{run}", "--out", "{blocked}/report.html"],
    ["predict", "{run}", "{photo}", "--out", "{blocked}/rows.csv"],
    ["export", "{run}", "--format", "onnx", "--out", "{blocked}/model.onnx"],
])
def test_an_out_that_cannot_be_written_is_one_line_before_any_work(arguments, a_run, tiny_cache, tmp_path, capsys):
    """--out under a file (ENOTDIR): exit 2 in one line naming it; the file is left as it was."""
    blocked = tmp_path / "a-file"
    blocked.write_text("keep me")
    photos = tiny_cache.parent / "photos"
    values = dict(photos=photos, blocked=blocked, cache=tiny_cache, run=a_run, photo=sorted(photos.glob("*.jpg"))[0])
    assert run([part.format(**values) for part in arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"cnnlab {arguments[0]}: error:") and "\n" not in error and "a-file" in error
    assert blocked.read_text() == "keep me"
