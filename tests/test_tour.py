"""docs/make_tutorial.py --quick: the guided tour's script runs its real commands on a few photos
(`cnnlab reproduce --quick` with 8/4/4 per class and one epoch) and writes every section, with
figures that exist and numbers that are the reproduction's, so the committed tour cannot rot."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
SCRIPT = REPOSITORY / "docs" / "make_tutorial.py"


@pytest.fixture(scope="module")
def tour(shared_photos, tmp_path_factory):
    root = tmp_path_factory.mktemp("tour")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPOSITORY / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--photos", str(shared_photos),
                           "--out", str(root / "docs"), "--work", str(root / "work")],
                          capture_output=True, text=True, env=environment, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, (root / "docs" / "tutorial.md").read_text()


def test_every_section_in_the_tutorials_order(tour):
    sys.path.insert(0, str(SCRIPT.parent))
    from make_tutorial import SECTIONS

    _, page = tour
    positions = [page.find(f"\n## {title}\n") for title in SECTIONS]
    assert all(position > 0 for position in positions), dict(zip(SECTIONS, positions))
    assert positions == sorted(positions)
    for command in ("$ cnnlab filters", "$ cnnlab survey", "$ cnnlab prepare", "$ cnnlab models",
                    "$ cnnlab compare"):
        assert command in page, command


def test_figures_exist_and_are_small(tour):
    root, page = tour
    named = re.findall(r"!\[[^\]]*\]\((tutorial/[^)]+\.png)\)", page)
    assert len(named) >= 7  # filters, five learning curves, thresholds, the modern run's curves
    on_disk = sorted(path.name for path in (root / "docs" / "tutorial").glob("*.png"))
    assert sorted(Path(name).name for name in named) == on_disk
    for name in named:
        size = (root / "docs" / name).stat().st_size
        assert 1000 < size < 400_000, (name, size)


def test_numbers_are_the_reproductions(tour):
    root, page = tour
    results = json.loads((root / "work" / "reproduce" / "results.json").read_text())
    for row in results["rows"]:
        if row["model"] in ("mlp", "conv1", "conv2", "conv2-wide", "conv2-fc512"):
            assert f"**{row['model']}** ({row['parameters']:,} parameters" in page
            assert f"validation MSE {row['val_mse']:.2f}" in page
    # The worked convolution's numbers are computed: the spelled-out sum equals the stated result.
    products, total = re.search(r"\(row by row\): ([^=]+) = (-?\d+)", page).groups()
    assert sum(float(a) * float(b) for a, b in (term.split("x") for term in products.split(" + "))) == float(total)
    assert str(root) not in page  # scratch paths are shown as WORK, not as this machine's folders
