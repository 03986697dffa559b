"""The writers and loaders behind `cnnlab export`, one pair per format (see cnnlab.inference.export).

Each writer saves the run's Keras model with the metadata inside; each loader returns a forward
function (model inputs -> raw outputs) of the reloaded file, run by that format's own runtime.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

METADATA_KEY = "cnnlab"
INPUT_NAME = "pixels"
OUTPUT_NAME = "probabilities"
# Kept identical to the TorchScript exporter that Keras uses for a dynamic batch (see export_onnx).
ONNX_OPSET = 18


def export_onnx(classifier, path: Path, metadata: dict) -> None:
    """Keras' own ONNX export (model.export(format="onnx")), with a dynamic batch dimension.

    On the torch backend Keras hands a signature with a None batch to torch.onnx.export's
    TorchScript exporter (its dynamo path would fix the batch at 1). Needs the onnx package.
    """
    import onnx
    from cnnlab.backend import keras

    signature = [keras.InputSpec(shape=(None, *classifier.model.inputs[0].shape[1:]), dtype="float32",
                                 name=INPUT_NAME)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about Python ints in Keras' shape checks
        classifier.model.export(str(path), format="onnx", input_signature=signature, verbose=False,
                                opset_version=ONNX_OPSET)
    model = onnx.load(str(path))
    _rename_output(model.graph, OUTPUT_NAME)
    del model.metadata_props[:]
    entries = {METADATA_KEY: json.dumps(metadata), "classes": json.dumps(metadata["classes"]),
               "threshold": json.dumps(metadata["threshold"]), "decision": metadata["decision"]}
    entries.update({f"input_{key}": json.dumps(value) if not isinstance(value, str) else value
                    for key, value in metadata["input"].items()})
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = f"cnnlab {metadata['model']} classifier: {', '.join(metadata['classes'])}"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _rename_output(graph, name: str) -> None:
    """The exporter names the output after an internal node ('65'); give it a stable name."""
    old = graph.output[0].name
    for node in graph.node:
        node.output[:] = [name if output == old else output for output in node.output]
        node.input[:] = [name if value == old else value for value in node.input]
    graph.output[0].name = name


def onnx_forward(path: Path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return lambda inputs: session.run(None, {input_name: np.ascontiguousarray(inputs, dtype=np.float32)})[0]


def export_keras(classifier, path: Path, metadata: dict) -> None:
    """model.save: architecture and weights in one zip; the metadata rides along as cnnlab.json
    (Keras reads only its own entries, so loading is unaffected). The saved model is made of
    stock Keras layers only (cnnlab.models.layers.stock_keras_model), so that plain Keras loads
    it without cnnlab; the parity check then runs on that copy as reloaded."""
    from cnnlab.models.layers import stock_keras_model

    stock_keras_model(classifier.model).save(str(path))
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(f"{METADATA_KEY}.json", json.dumps(metadata, indent=1))


def keras_forward(path: Path):
    from cnnlab.inference.classifier import _no_gradient
    from cnnlab.backend import keras

    model = keras.saving.load_model(str(path), compile=False)  # safe_mode: no code from the file

    def forward(inputs):
        with _no_gradient():
            return np.asarray(keras.ops.convert_to_numpy(model(inputs, training=False)))
    return forward


def read_keras_metadata(path: str | os.PathLike) -> dict:
    """The metadata inside a .keras file written by `cnnlab export`."""
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read(f"{METADATA_KEY}.json"))


def read_onnx_metadata(path: str | os.PathLike) -> dict:
    """The metadata inside an ONNX file written by `cnnlab export`."""
    import onnx

    props = {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props[METADATA_KEY])
