"""What the HTTP API does with uploaded bytes, free of any web framework: decode, predict, explain.

Photos are decoded by the project's decoder (cnnlab.data.decode) exactly as `cnnlab predict`
decodes files, so the same bytes give the same pixels and the same answer. Bad uploads never
raise: each becomes a row with its error and a kind ("unsupported" when the bytes are not an
image format at all, "bad" when they are a broken, truncated or oversized image), from which the
app picks the status code.

Model calls are serialised by one lock. A Keras model is one object with layer state (built
flags, the Grad-CAM probe, PyTorch's autograd mode is per thread but the modules are shared),
and on 2 cores parallel forward passes would only compete for the same cores; decoding, the
slow part for single photos, runs outside the lock, in as many threads as the server gives.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from cnnlab.data.decode import BadImage, decode_image

NOT_AN_IMAGE = "not an image"  # the start of decode's reason for bytes in no image format


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


@dataclass
class Decoded:
    filename: str
    pixels: np.ndarray | None
    error: str | None = None
    kind: str | None = None  # None (good), "unsupported" or "bad"


def decode_upload(upload: Upload, options) -> Decoded:
    """One upload -> the run's input pixels, or the reason it cannot be used. Never raises."""
    try:
        return Decoded(upload.filename, decode_image(upload.data, options))
    except BadImage as reason:
        kind = "unsupported" if str(reason).startswith(NOT_AN_IMAGE) else "bad"
        return Decoded(upload.filename, None, str(reason), kind)
    except Exception as error:  # noqa: BLE001 - a decoder surprise is the upload's problem, not a 500
        return Decoded(upload.filename, None, f"cannot decode ({type(error).__name__}: {error})", "bad")


class PredictionService:
    """A Classifier behind a lock, answering with JSON-ready rows."""

    def __init__(self, classifier):
        self.classifier = classifier
        self.lock = threading.Lock()
        self._explainer = None
        self._explainer_error: str | None = None

    # ---- description -------------------------------------------------------------------------

    def describe(self) -> dict:
        classifier = self.classifier
        options = classifier.options
        return {"run": classifier.run, "engine": classifier.engine, "classes": classifier.classes,
                "threshold": classifier.threshold,
                "threshold_source": classifier.threshold_source,
                "decision": ("class 1 when P(class 1) > threshold" if classifier.threshold is not None
                             else "the most probable class"),
                "input": {"width": options.width, "height": options.height, "fit": options.fit,
                          "draft": options.draft, "pixel_scale": classifier.pixel_scale,
                          "test_time_flip": classifier.tta_flip}}

    # ---- prediction ----------------------------------------------------------------------------

    def decode(self, uploads: list[Upload]) -> list[Decoded]:
        return [decode_upload(upload, self.classifier.options) for upload in uploads]

    def predict(self, uploads: list[Upload]) -> list[dict]:
        """One row per upload, in order: filename, label, probabilities, threshold, error."""
        return self.predict_decoded(self.decode(uploads))

    def predict_decoded(self, decoded: list[Decoded]) -> list[dict]:
        good = [item.pixels for item in decoded if item.error is None]
        probabilities = iter(())
        if good:
            with self.lock:
                probabilities = iter(self.classifier.probabilities(np.stack(good)))
        return [self._row(item, None if item.error else next(probabilities)) for item in decoded]

    def _row(self, item: Decoded, probabilities) -> dict:
        classifier = self.classifier
        if probabilities is None:
            return {"filename": item.filename, "label": None, "probabilities": {}, "threshold": classifier.threshold,
                    "error": item.error, "error_kind": item.kind}
        return {"filename": item.filename, "label": classifier.classes[classifier.decide(probabilities)],
                "probabilities": {name: float(value) for name, value in zip(classifier.classes, probabilities)},
                "threshold": classifier.threshold, "error": None, "error_kind": None}

    # ---- explanation ---------------------------------------------------------------------------

    def grad_cam(self, pixels: np.ndarray):
        """(heatmap at the model's input size, layer name) or (None, the reason)."""
        from cnnlab.explain.introspect import Explainer

        with self.lock:
            if self._explainer is None and self._explainer_error is None:
                try:
                    explainer = Explainer(self.classifier.keras_model())  # built on first use with --engine onnx
                    if explainer.target is None:
                        self._explainer_error = "the model has no convolutional layers, so no Grad-CAM"
                    else:
                        self._explainer = explainer
                except ValueError as error:
                    self._explainer_error = str(error)
            if self._explainer is None:
                return None, self._explainer_error
            explanation = self._explainer.explain(pixels, self.classifier.pixel_scale)
            return explanation.heatmap, self._explainer.target.name
