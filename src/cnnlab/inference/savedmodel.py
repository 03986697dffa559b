"""`cnnlab export --format savedmodel`: a TensorFlow SavedModel, made by TensorFlow in a child process.

Keras writes SavedModels from the TensorFlow backend only (on PyTorch it needs torch_xla), and a
process has one backend for good once Keras is imported. So a child Python with TensorFlow
rebuilds the run's registered architecture on the TensorFlow backend, in the run's own layout
(channels_first: Keras transposes around TensorFlow's CPU kernels), loads the same weights file,
exports the model with a dynamic batch, reloads the SavedModel with tf.saved_model.load and runs
its `serve` function on the inputs the parent sends, for the parent's parity check.

The child is this Python when it can import tensorflow, else $CNNLAB_TENSORFLOW_PYTHON (what
`make test-tensorflow` sets to .venv-tf/bin/python); with neither, the export stops at once with
a one-line error saying to install the tensorflow extra.

    python -m cnnlab.inference.savedmodel RUN OUT METADATA.json INPUTS.npz OUTPUTS.npz
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from cnnlab.errors import UserError

TENSORFLOW_PYTHON = "CNNLAB_TENSORFLOW_PYTHON"
INSTALL_HINT = ("savedmodel export needs TensorFlow, which is not installed: install the tensorflow extra "
                "(`make setup-tensorflow`, then run .venv-tf/bin/cnnlab export ...), or set "
                f"{TENSORFLOW_PYTHON} to a Python that has it")
ASSET_NAME = "cnnlab.json"
CHILD_TIMEOUT_S = 600


def tensorflow_python() -> str | None:
    """A Python interpreter that can import tensorflow, or None."""
    if importlib.util.find_spec("tensorflow") is not None:
        return sys.executable
    other = os.environ.get(TENSORFLOW_PYTHON)
    return other if other and Path(other).is_file() else None


def check_tensorflow() -> str:
    python = tensorflow_python()
    if python is None:
        raise UserError(INSTALL_HINT)
    return python


def export_savedmodel(run: Path, out: Path, metadata: dict, inputs: list[np.ndarray]):
    """Write the SavedModel folder `out`; return a forward function that answers `inputs` with the
    reloaded SavedModel's outputs (computed in the child). ValueError with the child's last line
    when TensorFlow fails."""
    python = check_tensorflow()
    source_root = str(Path(__file__).resolve().parents[2])  # the folder holding the cnnlab package
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
                   "CNNLAB_IMAGE_FORMAT": metadata["input"]["layout"],
                   "PYTHONPATH": os.pathsep.join(filter(None, [source_root, os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory(prefix="cnnlab-savedmodel-") as scratch:
        scratch = Path(scratch)
        (scratch / "metadata.json").write_text(json.dumps(metadata))
        np.savez(scratch / "inputs.npz", *inputs)
        command = [python, "-m", "cnnlab.inference.savedmodel", str(run), str(out), str(scratch / "metadata.json"),
                   str(scratch / "inputs.npz"), str(scratch / "outputs.npz")]
        try:
            finished = subprocess.run(command, env=environment, capture_output=True, text=True,
                                      timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise UserError(f"savedmodel export: TensorFlow did not finish within {CHILD_TIMEOUT_S} s") from None
        if finished.returncode != 0:
            # A failure inside TensorFlow is a bug, not the user's mistake: keep its traceback.
            tail = "\n".join(finished.stderr.splitlines()[-40:]) or f"exit status {finished.returncode}"
            raise RuntimeError(f"savedmodel export failed in TensorFlow ({python}):\n{tail}")
        with np.load(scratch / "outputs.npz") as stored:
            outputs = [stored[f"arr_{index}"] for index in range(len(inputs))]

    def forward(batch: np.ndarray) -> np.ndarray:
        for given, output in zip(inputs, outputs):
            if given.shape == batch.shape and np.array_equal(given, batch):
                return output
        raise RuntimeError("the SavedModel parity check asked for an input that was not sent to TensorFlow")
    return forward


def _child(run: str, out: str, metadata_file: str, inputs_file: str, outputs_file: str) -> None:
    """In the TensorFlow process: export, reload, run."""
    from cnnlab.backend import configure_keras

    # This process is cnnlab's own: set Keras up explicitly (the run's layout, from the
    # environment) before TensorFlow imports Keras on its own terms.
    keras = configure_keras()
    import tensorflow as tf

    from cnnlab.runs import Run

    run_folder = Run.open(run)
    model = run_folder.build_model()
    signature = [keras.InputSpec(shape=(None, *run_folder.config["input_shape"]), dtype="float32", name="pixels")]
    model.export(out, format="tf_saved_model", input_signature=signature, verbose=False)
    assets = Path(out) / "assets"
    assets.mkdir(exist_ok=True)
    (assets / ASSET_NAME).write_text(Path(metadata_file).read_text())
    reloaded = tf.saved_model.load(out)
    with np.load(inputs_file) as stored:
        outputs = [np.asarray(reloaded.serve(tf.constant(stored[name]))) for name in sorted(stored.files,
                                                                                          key=lambda n: int(n[4:]))]
    np.savez(outputs_file, *outputs)


if __name__ == "__main__":
    _child(*sys.argv[1:6])
