"""The package's contracts, checked: one owner of the run folder, Keras configured in one place
and never as an import side effect, and layers that import only downward (pyproject.toml's
import-linter contract, which `make test` also runs as `lint-imports`)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
PACKAGE = REPOSITORY / "src" / "cnnlab"
RUN_FOLDER_OWNER = PACKAGE / "runs"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# Every file of a run folder (cnnlab.runs.files spells them), matched as whole path parts.
RUN_FILE_NAMES = {"config.json", "classes.json", "data.json", "versions.json", "state.json", "metrics.jsonl",
                  "evaluation.json", "checkpoint", "logs", "metrics.csv", "mlflow.db", "mlflow-run.json",
                  "best.onnx", "best.onnx.json"}


def names_a_run_file(text: str) -> bool:
    if any(character.isspace() for character in text):
        return False  # a sentence (help text, a message), not a file name
    return any(part in RUN_FILE_NAMES or part.endswith(".weights.h5") or part.startswith("predictions-")
               for part in text.split("/"))


def docstring_nodes(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def run_file_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of string constants that name a run file: a token without spaces (a file
    name, not a sentence of help text); docstrings may name files freely."""
    tree = ast.parse(path.read_text(), filename=str(path))
    docstrings = docstring_nodes(tree)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and names_a_run_file(node.value)]


def test_only_the_run_folder_owner_names_run_files():
    offenders = [f"{path.relative_to(REPOSITORY)}:{line}: {text!r}"
                 for path in sorted(PACKAGE.rglob("*.py")) if RUN_FOLDER_OWNER not in path.parents
                 for line, text in run_file_literals(path)]
    assert offenders == [], "read and write run folders through cnnlab.runs.Run:\n" + "\n".join(offenders)


def test_the_literal_check_finds_a_run_file_name(tmp_path):
    """The check above would see a module that opened config.json or named a checkpoint by hand."""
    module = tmp_path / "reader.py"
    module.write_text('"""Reads config.json (a docstring may say so)."""\n'
                      'from pathlib import Path\n\n\ndef read(run):\n    return (Path(run) / "config.json").read_text()\n\n\n'
                      'def checkpoint(number):\n    return f"checkpoint/epoch-{number}.weights.h5"\n\n\n'
                      'HELP = "start from an earlier run\'s best.weights.h5"\n')
    assert sorted(run_file_literals(module)) == [(6, "config.json"), (10, ".weights.h5"), (10, "checkpoint/epoch-")]
    assert not names_a_run_file("reproduce-config.json") and not names_a_run_file("metadata.json")


def python(code: str, **environment) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "KERAS_BACKEND": "torch", **environment})


def test_importing_cnnlab_leaves_a_callers_keras_set_up_alone():
    """A caller who set Keras up first keeps their image layout, whatever cnnlab modules they import
    (cnnlab.training.batches used to reset it to channels_first at import)."""
    result = python(
        "import keras\n"
        "keras.config.set_image_data_format('channels_last')\n"
        "import cnnlab.models, cnnlab.recipe, cnnlab.training.batches, cnnlab.training.trainer, "
        "cnnlab.training.evaluation, cnnlab.inference.classifier, cnnlab.explain.introspect, cnnlab.report\n"
        "from cnnlab.backend import keras as configured\n"
        "print(keras.config.image_data_format(), configured is keras)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["channels_last", "True"]


def test_cnnlab_configures_keras_itself_when_it_comes_first():
    """cnnlab.models imports no Keras (listing models must stay fast), so a caller who imports Keras
    after it gets cnnlab's set-up when cnnlab first uses Keras: PyTorch (the default it leaves in
    KERAS_BACKEND) and channels_first; and `from cnnlab.backend import keras` configures at once."""
    without_backend = {name: value for name, value in os.environ.items() if name != "KERAS_BACKEND"}
    result = subprocess.run([sys.executable, "-c", "import cnnlab.models, keras\ncnnlab.models.build_model('mlp')\n"
                             "print(keras.backend.backend(), keras.config.image_data_format())\n"],
                            capture_output=True, text=True, timeout=300, env=without_backend)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["torch", "channels_first"]
    result = python("import cnnlab.models\nfrom cnnlab.backend import keras\n"
                    "print(keras.backend.backend(), keras.config.image_data_format())\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["torch", "channels_first"]


# 1e-30 * 1e-10 is a denormal float32 (below 1.2e-38): zero where the CPU flushes them.
DENORMAL_PRODUCT = "import torch\nprint(float((torch.tensor([1e-30]) * 1e-10)[0]))\n"


def test_cnnlab_flushes_denormals_on_torch_and_leaves_a_callers_set_up_alone():
    """Keras' set-up on PyTorch flushes denormal floats (the mlp's saturated epochs ran 2x slower
    without it); a caller who imported Keras first keeps PyTorch's default, which keeps them."""
    flushed = python("from cnnlab.backend import keras\n" + DENORMAL_PRODUCT)
    assert flushed.returncode == 0, flushed.stderr
    assert float(flushed.stdout) == 0.0
    kept = python("import keras\nimport cnnlab.models\nfrom cnnlab.backend import keras as configured\n"
                  + DENORMAL_PRODUCT)
    assert kept.returncode == 0, kept.stderr
    assert 0.0 < float(kept.stdout) < 1.2e-38


def test_listing_models_and_reading_recipes_import_no_keras():
    result = python("import sys\nimport cnnlab.models, cnnlab.recipe, cnnlab.inference.classifier\n"
                    "cnnlab.models.describe_models(); cnnlab.models.get_model_spec('resnet9').recipe.input_shape()\n"
                    "print(sorted(name for name in ('keras', 'torch', 'tensorflow') if name in sys.modules))\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_reading_a_run_folder_and_the_command_line_import_no_keras():
    """Run.open and `cnnlab --help` must stay fast: they import neither Keras nor a backend."""
    result = python("import sys\nimport cnnlab.runs, cnnlab.cli, cnnlab.backend, cnnlab.data.cache\n"
                    "print(sorted(name for name in ('keras', 'torch', 'tensorflow') if name in sys.modules))\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (pip install -e '.[test]')")
def test_the_layers_contract_holds_and_catches_an_upward_import(tmp_path):
    """lint-imports keeps the contract today, and fails on a copy with one upward import added."""
    kept = subprocess.run([str(LINT_IMPORTS)], cwd=REPOSITORY, capture_output=True, text=True, timeout=300)
    assert kept.returncode == 0, kept.stdout + kept.stderr

    copy = tmp_path / "checkout"
    shutil.copytree(PACKAGE, copy / "src" / "cnnlab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPOSITORY / "pyproject.toml", copy / "pyproject.toml")
    with open(copy / "src" / "cnnlab" / "data" / "subset.py", "a") as module:
        module.write("\nimport cnnlab.runs  # a data module reaching up into the run folder's owner\n")
    broken = subprocess.run([str(LINT_IMPORTS)], cwd=copy, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(copy / "src")})
    assert broken.returncode != 0
    assert "cnnlab.data.subset -> cnnlab.runs" in broken.stdout
