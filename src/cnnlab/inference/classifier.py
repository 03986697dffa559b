"""A trained run as a classifier: `cnnlab.load(RUN).predict(photos)`.

The run's registered architecture is rebuilt and only its weights are loaded (no code from a
file). Photos get the run's own preprocessing: decoded as its cache was (size, fit, JPEG draft
from the run's data record), scaled as its recipe says, and mirrored and averaged when the recipe
evaluates with test-time flips. Two-class runs decide with the threshold chosen on validation
(the run's evaluation), the same rule as `cnnlab evaluate`: class 1 when P(class 1) > threshold.
Runs with more classes take the most probable class.

Photos stream in batches: a batch is decoded, predicted and handed on before the next one is
read, so memory does not grow with the number of photos.

Two engines run the network (`load(RUN, engine=...)`): 'keras' rebuilds the registered
architecture and loads the weights (imports Keras and PyTorch: seconds and ~450 MB before the
first photo, benchmarks/cold_start.py); 'onnx' runs the run's ONNX export (RUN/best.onnx, made once from the best weights
with `cnnlab export`'s parity check, see cnnlab.inference.run_export) in ONNX Runtime and imports
neither. Both feed the same numbers (same decoding, scaling, layout and test-time flips) and
agree within the parity tolerance (1e-4). 'auto' is onnx when the export exists or can be made.
This module imports no Keras itself.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from cnnlab.data.decode import DecodeOptions, decode_file, fit_image, to_rgb
from cnnlab.errors import UserError
from cnnlab.inference.inputs import Source, expand_paths
from cnnlab.recipe.pixels import to_model_input, width_axis
from cnnlab.runs import Run

DEFAULT_BATCH_SIZE = 64
DEFAULT_THRESHOLD = 0.5
ENGINES = ("auto", "onnx", "keras")
NOT_FINITE = "the model's output for this photo is not a number (NaN or infinite); the run may have diverged"
NOT_EVALUATED = ("{run} has no validation threshold (never evaluated, or no validation split); using 0.5. "
                 "Run `cnnlab evaluate {run}` to choose one on validation")


@dataclass(frozen=True)
class Prediction:
    """One photo's result. label and probabilities are empty when error says why it failed."""

    label: str | None
    probabilities: dict[str, float]
    path: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def resolve_threshold(run: Run | Path, classes: list[str], override: float | None) -> tuple[float | None, str, list[str]]:
    """(threshold, where it came from, notes). None for more than two classes (argmax decides)."""
    run = run if isinstance(run, Run) else Run(run)
    if override is not None:
        if isinstance(override, bool) or not isinstance(override, (int, float)) or not math.isfinite(override) \
                or not 0.0 <= override <= 1.0:
            raise UserError(f"--threshold must be a probability between 0 and 1, got {override!r}")
        if len(classes) != 2:
            raise UserError(f"--threshold applies to two-class runs; {run.path} has {len(classes)} classes "
                             "and predicts the most probable one")
        return float(override), "override", []
    if len(classes) != 2:
        return None, "argmax", []
    threshold = run.validation_threshold
    if threshold is None:
        return DEFAULT_THRESHOLD, "default", [NOT_EVALUATED.format(run=run.path)]
    return threshold, "validation", []


def _no_gradient():
    """Inference only: PyTorch would otherwise record every operation for a backward pass."""
    from cnnlab.backend import no_gradient

    return no_gradient()


class Classifier:
    """A model with its classes, preprocessing and decision threshold. Build one with `load`.

    model: the Keras model (engine 'keras'), or None where `network` runs the model instead
    (engine 'onnx': a function from model inputs to raw outputs) and `layout` says the input's
    layout; the Keras model is then built only if asked for (`keras_model()`, e.g. Grad-CAM).
    """

    def __init__(self, model, classes, options: DecodeOptions, pixel_scale: str, threshold: float | None = None,
                 tta_flip: bool = False, run: str | None = None, threshold_source: str = "given",
                 notes: list[str] | None = None, network=None, layout: str | None = None, engine: str = "keras"):
        self.model = model
        self.network = network
        self.layout = layout  # None: Keras' image data format
        self.engine = engine
        self.classes = list(classes)
        self.options = options
        self.pixel_scale = pixel_scale
        self.threshold = threshold if len(self.classes) == 2 else None
        self.tta_flip = tta_flip
        self.run = run
        self.threshold_source = threshold_source
        self.notes = list(notes or [])

    def __repr__(self) -> str:
        return (f"Classifier(run={self.run!r}, classes={self.classes}, threshold={self.threshold}, "
                f"input={self.options.width}x{self.options.height} {self.options.fit}, pixels={self.pixel_scale}, "
                f"engine={self.engine!r})")

    def keras_model(self):
        """The Keras model: this classifier's own, or (engine 'onnx') the run's, built on first use."""
        if self.model is None:
            if self.run is None:
                raise UserError("this classifier has no Keras model and no run to build one from")
            self.model = Run.open(self.run).build_model()
        return self.model

    # ---- single photos ----------------------------------------------------------------------

    def prepare_pixels(self, picture) -> np.ndarray:
        """A PIL image or a uint8 (height, width, 3) array -> the run's (height, width, 3) input.

        Already decoded, so the JPEG draft step cannot apply: pass paths for pixels identical
        to training; other sizes are brought to the run's size with its fit (stretch/pad/crop).
        """
        if isinstance(picture, Image.Image):
            image = to_rgb(ImageOps.exif_transpose(picture))
        else:
            pixels = np.asarray(picture)
            if (pixels.shape[0], pixels.shape[1]) == (self.options.height, self.options.width):
                return pixels
            image = Image.fromarray(pixels)
        if image.size != (self.options.width, self.options.height):
            image = fit_image(image, self.options)
        return np.asarray(image, dtype=np.uint8)

    def forward(self, inputs: np.ndarray) -> np.ndarray:
        """Model inputs (float32, scaled, in the model's layout) -> the model's raw outputs as NumPy."""
        if self.network is not None:
            return np.asarray(self.network(inputs))
        from cnnlab.backend import keras

        from cnnlab.models.activations import inference_batch_size

        # In pieces whose layer outputs fit INFERENCE_BYTES: a Keras functional model holds all of them.
        piece = inference_batch_size(self.model)
        with _no_gradient():
            return np.concatenate([np.asarray(keras.ops.convert_to_numpy(self.model(inputs[start:start + piece],
                                                                                   training=False)))
                                   for start in range(0, len(inputs), piece)])

    def probabilities(self, pixels: np.ndarray, forward=None) -> np.ndarray:
        """uint8 (n, height, width, 3) at the run's size -> (n, classes) probabilities.

        forward: the function from model inputs to raw outputs (default: this run's Keras model).
        `cnnlab export` passes an exported copy's, so both go through the same scaling, flips
        and column handling and only the model itself can differ.
        """
        forward = forward or self.forward
        inputs = to_model_input(pixels, self.pixel_scale, self.layout)
        outputs = np.asarray(forward(inputs), dtype=np.float64)
        if self.tta_flip:
            mirrored = np.ascontiguousarray(np.flip(inputs, axis=width_axis(self.layout)))
            outputs = (outputs + np.asarray(forward(mirrored), dtype=np.float64)) / 2
        outputs = np.clip(outputs, 0.0, 1.0)
        if outputs.shape[1] == 1:  # one sigmoid unit: P(class 1)
            outputs = np.concatenate([1.0 - outputs, outputs], axis=1)
        return outputs

    def decide(self, probabilities: np.ndarray) -> int:
        """The predicted class index for one row of probabilities."""
        if self.threshold is not None:
            return int(probabilities[1] > self.threshold)
        return int(np.argmax(probabilities))

    # ---- many photos ------------------------------------------------------------------------

    def _items(self, inputs) -> list:
        """Inputs -> a flat list of Sources (files) and (array, index) / PIL items, checked up front."""
        if isinstance(inputs, (str, os.PathLike, Image.Image, np.ndarray)):
            inputs = [inputs]
        items = []
        for value in inputs:
            if isinstance(value, (str, os.PathLike)):
                items.extend(expand_paths([value]))
            elif isinstance(value, Image.Image):
                items.append(value)
            elif isinstance(value, np.ndarray):
                if value.dtype != np.uint8 or value.ndim not in (3, 4) or value.shape[-1] != 3:
                    raise UserError(f"arrays must be uint8 (height, width, 3) or (n, height, width, 3) RGB, "
                                     f"got {value.dtype} {value.shape}")
                stack = value[None] if value.ndim == 3 else value
                items.extend((stack, index) for index in range(len(stack)))
            elif isinstance(value, Source):
                items.append(value)
            else:
                raise TypeError(f"cannot predict on a {type(value).__name__}: pass paths, PIL images or uint8 arrays")
        return items

    def _load(self, item) -> tuple[np.ndarray | None, str | None, str | None]:
        """(pixels or None, path or None, error or None) for one item."""
        if isinstance(item, Source):
            if item.problem:
                return None, item.path, item.problem
            pixels, _, reason = decode_file(item.path, self.options)
            return pixels, item.path, reason
        if isinstance(item, tuple):
            stack, index = item
            return self.prepare_pixels(stack[index]), None, None
        return self.prepare_pixels(item), None, None

    def predict_batches(self, inputs, batch_size: int = DEFAULT_BATCH_SIZE):
        """Yield one list of Predictions per batch, in input order; at most one batch decoded at a time."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise UserError(f"--batch-size must be a positive whole number, got {batch_size!r}")
        items = self._items(inputs)
        for start in range(0, len(items), batch_size):
            loaded = [self._load(item) for item in items[start:start + batch_size]]
            good = [pixels for pixels, _, error in loaded if error is None]
            rows = iter(self.probabilities(np.stack(good)) if good else ())
            batch = []
            for pixels, path, error in loaded:
                if error is not None:
                    batch.append(Prediction(None, {}, path, error))
                    continue
                probabilities = next(rows)
                if not np.isfinite(probabilities).all():
                    # Never a label from NaN: np.argmax and "> threshold" would quietly pick class 0.
                    batch.append(Prediction(None, {}, path, NOT_FINITE))
                    continue
                batch.append(Prediction(self.classes[self.decide(probabilities)],
                                        {name: float(value) for name, value in zip(self.classes, probabilities)},
                                        path))
            yield batch

    def predict(self, inputs, batch_size: int = DEFAULT_BATCH_SIZE) -> list[Prediction]:
        """Paths (files, folders, globs), PIL images or uint8 arrays -> one Prediction per photo.

        A file that cannot be decoded gets a Prediction with its error instead of raising.
        """
        return [prediction for batch in self.predict_batches(inputs, batch_size) for prediction in batch]

    def predict_proba(self, inputs, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """(n, classes) probabilities in class order; a row of NaN for a photo that failed."""
        predictions = self.predict(inputs, batch_size)
        result = np.full((len(predictions), len(self.classes)), np.nan)
        for row, prediction in enumerate(predictions):
            if prediction.ok:
                result[row] = [prediction.probabilities[name] for name in self.classes]
        return result


def load(run: str | os.PathLike, threshold: float | None = None, weights: str = "best", engine: str = "keras",
         photos=()) -> Classifier:
    """Load a trained run folder as a Classifier (weights only: loading never runs code from a file).

    threshold overrides the validation-chosen one (two-class runs only).
    engine: 'keras' (the registered architecture with the weights), 'onnx' (the run's ONNX export
    in ONNX Runtime, made first if it is missing or older than the weights: no Keras once it
    exists) or 'auto' (onnx when the export exists or can be made, else keras, with a note).
    photos: paths the export's parity check may use when the run's cache is gone.
    """
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    run = Run.open(run)
    preprocessing = run.preprocessing()
    chosen, source, notes = resolve_threshold(run, run.classes, threshold)
    settings = dict(tta_flip=preprocessing.tta_flip, run=str(run.path), threshold_source=source, notes=notes)
    if engine != "keras":
        from cnnlab.inference.run_export import onnx_network

        network, layout, more_notes = onnx_network(run, weights, required=engine == "onnx", photos=photos)
        if more_notes and network is not None and run.precision != "float32":
            # The export computes in float32, the run's own evaluation in bfloat16. On a resnet9-tiny
            # run (1,493 shared photos) the two differed by 0.004 on average, 0.02 at most, and gave
            # the same labels to 99.6% of photos and the same accuracy: not worth Keras' 6-second start.
            more_notes.append(f"this run computes in {run.precision}, its export in float32: probabilities can "
                              "differ from `cnnlab evaluate`'s by about 0.01 (--engine keras computes as trained)")
        settings["notes"] = notes + more_notes
        if network is not None:
            return Classifier(None, run.classes, preprocessing.decode, preprocessing.pixel_scale, chosen,
                              network=network, layout=layout, engine="onnx", **settings)
    model = run.build_model(weights)
    return Classifier(model, run.classes, preprocessing.decode, preprocessing.pixel_scale, chosen, **settings)
