"""docs/tour.ipynb, the guided tour as a notebook: the committed file is exactly what
docs/make_notebook.py writes (cleared, in the tour's sections), and it runs, every cell, in a real
Jupyter kernel on a few real photos (CNNLAB_TOUR_QUICK: 8/4/4 per class, one epoch), showing the
tables and figures a reader would see.

The kernel is this interpreter (sys.executable) through a kernel spec written into tmp_path, found
by a KernelSpecManager that looks nowhere else: no user-level Jupyter install or `python3` kernel
elsewhere on the machine is needed or used.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from conftest import copy_real_photos

REPOSITORY = Path(__file__).resolve().parents[1]
DOCS = REPOSITORY / "docs"
KERNEL = "cnnlab-tour-test"
CELL_TIMEOUT = 300  # seconds; the first cell that imports Keras takes the longest on a loaded machine
sys.path.insert(0, str(DOCS))  # make_notebook and make_tutorial, the scripts that write the tour

import make_notebook  # noqa: E402
from make_tutorial import SECTIONS, TUTORIAL_STEPS  # noqa: E402

MODELS = [name for names in TUTORIAL_STEPS.values() for name in names]


def checkout_files() -> list[Path]:
    return sorted(path for path in DOCS.rglob("*") if "__pycache__" not in path.parts)


def test_committed_notebook_is_what_the_script_writes():
    assert (DOCS / "tour.ipynb").read_text() == make_notebook.text(), "run `python docs/make_notebook.py`"


def test_committed_notebook_is_cleared_and_follows_the_tours_sections():
    import nbformat

    notebook = nbformat.read(DOCS / "tour.ipynb", as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    headings = [cell.source.splitlines()[0][3:] for cell in notebook.cells
                if cell.cell_type == "markdown" and cell.source.startswith("## ")]
    assert [title for title in headings if title in SECTIONS] == list(SECTIONS)  # the page's, in its order
    assert "Your own photos" in headings
    # Python only: no shell escapes or magics, so it runs wherever `import cnnlab` does.
    assert not [line for cell in code for line in cell.source.splitlines() if line.lstrip().startswith(("!", "%"))]


@pytest.fixture(scope="module")
def executed(shared_photos, tmp_path_factory):
    import nbformat
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    root = tmp_path_factory.mktemp("notebook")
    photos = copy_real_photos(shared_photos, root / "photos", 16)  # the quick split takes 8 + 4 + 4 per class
    python_path = os.pathsep.join([str(REPOSITORY / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    # write_kernel_spec's argv starts with sys.executable: the kernel is this venv's Python.
    write_kernel_spec(root / "kernels" / KERNEL, overrides={"env": {
        "CNNLAB_TOUR_DATA": str(photos), "CNNLAB_TOUR_WORK": str(root / "work"), "CNNLAB_TOUR_QUICK": "1",
        "PYTHONPATH": python_path, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "torch"),
        "IPYTHONDIR": str(root / "ipython")}})  # IPython's profile in tmp_path, not the user's home
    specs = KernelSpecManager(kernel_dirs=[str(root / "kernels")], ensure_native_kernel=False)
    notebook = nbformat.read(DOCS / "tour.ipynb", as_version=4)
    before = checkout_files()
    kernel = KernelManager(kernel_name=KERNEL, kernel_spec_manager=specs, connection_file=str(root / "kernel.json"))
    client = NotebookClient(notebook, km=kernel,
                            timeout=CELL_TIMEOUT, startup_timeout=180,
                            resources={"metadata": {"path": str(DOCS)}})  # where Jupyter would start it
    try:
        client.execute()
    finally:
        nbformat.write(notebook, root / "tour-executed.ipynb")  # to read when a cell failed
    return notebook, root, before


def outputs_of(notebook, text: str) -> list:
    """The outputs of the one code cell whose source contains `text`."""
    cells = [cell for cell in notebook.cells if cell.cell_type == "code" and text in cell.source]
    assert len(cells) == 1, (text, len(cells))
    return cells[0].outputs


def rich(outputs, kind: str) -> list[str]:
    return [output["data"][kind] for output in outputs if kind in output.get("data", {})]


def printed(outputs) -> str:
    return "".join(output.get("text", "") for output in outputs if output["output_type"] == "stream"
                   and output["name"] == "stdout")


def test_every_cell_ran_without_an_error(executed):
    notebook, _, _ = executed
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    errors = [output for cell in code for output in cell.outputs if output["output_type"] == "error"]
    assert errors == []


def test_each_model_shows_its_evaluation_table_and_curves(executed):
    notebook, _, _ = executed
    for model in MODELS:
        tables = rich(outputs_of(notebook, f'runs["{model}"].evaluate()'), "text/html")
        assert len(tables) == 1 and "<table>" in tables[0] and f"<b>{model}</b>" in tables[0], model
        assert rich(outputs_of(notebook, f'runs["{model}"].plot_curves()'), "image/png"), model
    modern = rich(outputs_of(notebook, "modern.evaluate()"), "text/html")
    assert modern and "<table>" in modern[0] and "<b>resnet9-tiny</b>" in modern[0]  # the quick modern model
    assert rich(outputs_of(notebook, "modern.plot_curves()"), "image/png")


def test_figures_tables_and_numbers_of_the_other_steps(executed):
    notebook, _, _ = executed
    assert "by hand at (0, 1): sum(window * kernel) = 27 = result[0, 1] = 27" in printed(
        outputs_of(notebook, "correlate(picture, kernel)"))
    assert rich(outputs_of(notebook, "explore_filters("), "image/png")
    assert "per class: cat 16, dog 16" in printed(outputs_of(notebook, "format_survey("))
    prepared = "".join(rich(outputs_of(notebook, "cnnlab.prepare(DATA, WORK / \"cache\""), "text/plain"))
    assert "train 16 (dog 8, cat 8); val 8 (dog 4, cat 4); test 8 (dog 4, cat 4)" in prepared
    metrics = printed(outputs_of(notebook, "best_accuracy_over_thresholds("))
    assert "on 8 validation photos" in metrics and metrics.count("\n") >= 13  # nine thresholds and the verdicts
    table = "".join(rich(outputs_of(notebook, "cnnlab.compare(list(runs.values()))"), "text/markdown"))
    rows = [line.split(" | ")[0][2:] for line in table.splitlines() if line.startswith("| ")][1:]
    assert rows == MODELS
    assert "| conv2 | " in table and "(0.61)" in table  # the tutorial's published figure beside ours
    beside = "".join(rich(outputs_of(notebook, "cnnlab.compare([*runs.values(), modern])"), "text/markdown"))
    assert "| resnet9-tiny | " in beside
    predictions = printed(outputs_of(notebook, "modern.predict(photos)")).splitlines()
    assert len(predictions) == 6 and all("P(cat)" in line and "P(dog)" in line for line in predictions)
    assert sorted(line.split(".")[0] for line in predictions) == ["cat"] * 3 + ["dog"] * 3  # test photos of each


def test_outputs_go_to_the_work_folder_not_the_checkout(executed):
    _, root, before = executed
    assert checkout_files() == before
    runs = sorted(path.name for path in (root / "work" / "runs").iterdir())
    assert runs == sorted([*MODELS, "resnet9-tiny"])
