"""Prediction without Keras: the run's own ONNX export, run by ONNX Runtime.

`onnx_network(run)` returns a function from model inputs to raw outputs on RUN/best.onnx
(cnnlab.runs owns the file and its record). When the export is missing, or was made from other
weights than the current best ones, it is made first, exactly as `cnnlab export --format onnx`
makes one: Keras' ONNX export of the float32 model, reloaded by ONNX Runtime and checked on real
photos (the run's cache, else the photos being predicted) against the Keras model, within 1e-4
and with identical labels (cnnlab.inference.export.make_run_export). That call imports Keras;
every later one imports only ONNX Runtime, NumPy and Pillow: `cnnlab predict RUN photo.jpg`
starts in well under a second instead of ~8 s (benchmarks/cold_start.py).
"""

from __future__ import annotations

import os

import numpy as np

from cnnlab.errors import UserError
from cnnlab.runs import Run
from cnnlab.runs.files import BEST

ONNXRUNTIME_PIN = "onnxruntime==1.31.1"  # as pyproject.toml pins it


def session_network(path):
    """A forward function (float32 model inputs -> raw outputs) on the ONNX file at `path`."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # ONNX Runtime sizes its pool by physical cores, which a 2-vCPU machine may report as 1.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    options.intra_op_num_threads = cores
    options.log_severity_level = 3  # its start-up warnings are not the user's business
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def network(inputs: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: np.ascontiguousarray(inputs, dtype=np.float32)})[0]

    return network


def onnx_network(run: Run, weights: str = BEST, required: bool = False, photos=()):
    """(network, input layout, notes) on the run's ONNX export, made first when needed; with
    required=False, (None, None, notes) where it cannot be had (the caller then uses Keras), and
    a UserError otherwise. photos: paths for the parity check when the run's cache is gone."""
    if weights != BEST:
        if required:
            raise UserError(f"the ONNX engine predicts with the best weights only, not {weights!r}; use --engine keras")
        return None, None, []
    if not run.has_weights(BEST):
        return None, None, []  # the Keras path says what is missing
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        if required:
            raise UserError(f"the ONNX engine needs ONNX Runtime: pip install {ONNXRUNTIME_PIN}") from None
        return None, None, ["ONNX Runtime is not installed: predicting with Keras"]
    notes = []
    stored = run.onnx_export()
    if stored is None:
        from cnnlab.inference.export import make_run_export

        try:
            stored = make_run_export(run, photos)
        except (UserError, OSError, ImportError) as error:
            reason = str(error) or type(error).__name__
            if required:
                raise UserError(f"{run.path}: cannot make its ONNX export ({reason}); use --engine keras") from None
            return None, None, [f"predicting with Keras: could not make the ONNX export ({reason})"]
        parity = stored[1].get("parity", {})
        notes.append(f"made {stored[0]} from the best weights (parity on {parity.get('photos')} photos, largest "
                     f"difference {parity.get('max_difference', float('nan')):.1e}); later predictions start "
                     "without Keras")
    path, record = stored
    layout = record.get("input", {}).get("layout", "channels_first")
    return session_network(path), layout, notes
