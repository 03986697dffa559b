"""Every hostile kind of file (tests/hostile_files.py) through the entry points that use a trained
run: `cnnlab predict` and `cnnlab explain`. A bad photo is a row with its reason (predict exits
1) or a skip with its reason (explain), a valid odd format is predicted; never a traceback, a
hang or a label made up from a file that is not a whole photo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cnnlab.cli import run as cli_run
from hostile_files import KINDS, quadrants
from training_helpers import make_config, quiet_train



# conftest's no_hang: a hang fails the test instead of blocking the run.
pytestmark = pytest.mark.usefixtures("no_hang")


@pytest.fixture(scope="module")
def trained(tiny_cache, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("hostile-run") / "conv1"
    quiet_train(make_config(tiny_cache, run, epochs=1))
    return run


@pytest.fixture(params=sorted(KINDS))
def hostile(request, tmp_path, monkeypatch):
    kind = KINDS[request.param]
    folder = tmp_path / "photos"
    folder.mkdir()
    quadrants().save(folder / "dog.1.jpg", "JPEG", quality=95)  # one good photo beside it
    path = Path(kind.write(folder))
    if request.param == "vanishing":
        vanish_after_listing(monkeypatch, path)
    return request.param, kind, path, folder


def vanish_after_listing(monkeypatch, path: Path) -> None:
    """The file is removed after the command listed its inputs and before it reads them."""
    from cnnlab.explain import introspect
    from cnnlab.inference import inputs

    listing = inputs.expand_paths  # predict lists its PATH arguments here
    monkeypatch.setattr(inputs, "expand_paths", lambda arguments: (listing(arguments), path.unlink())[0])
    reading = introspect.decode_file  # explain reads each photo it was given here

    def read_after_removal(name, *arguments, **keywords):
        if Path(name) == path:
            path.unlink(missing_ok=True)
        return reading(name, *arguments, **keywords)
    monkeypatch.setattr(introspect, "decode_file", read_after_removal)


def test_predict(trained, hostile, tmp_path, capsys):
    name, kind, path, folder = hostile
    out = tmp_path / "predictions.json"
    status = cli_run(["predict", str(trained), str(folder / "dog.1.jpg"), str(path), "--format", "json",
                      "--out", str(out)])
    error = capsys.readouterr().err
    assert "Traceback" not in error
    rows = json.loads(out.read_text())["predictions"]
    assert rows[0]["label"] in ("cat", "dog") and rows[0]["error"] is None  # the good photo is predicted
    if kind.valid:
        assert status == 0, error
        assert len(rows) == 2 and rows[1]["label"] in ("cat", "dog"), name
    else:
        assert status == 1, error
        assert len(rows) == 2 and rows[1]["label"] is None and kind.reason in rows[1]["error"], (name, rows[1])


def test_explain(trained, hostile, tmp_path, capsys):
    name, kind, path, folder = hostile
    out = tmp_path / "explained"
    status = cli_run(["explain", str(trained), str(folder / "dog.1.jpg"), str(path), "--out", str(out)])
    error = capsys.readouterr().err
    assert status == (0 if kind.valid else 1) and "Traceback" not in error, error
    summary = json.loads((out / "explain.json").read_text())
    if kind.valid:
        assert len(summary["photos"]) == 2 and summary["skipped"] == [], name
    else:
        assert len(summary["photos"]) == 1
        assert len(summary["skipped"]) == 1 and kind.reason in summary["skipped"][0]["reason"], (name, summary)
