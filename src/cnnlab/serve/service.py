"""What the HTTP API does with uploaded bytes, free of any web framework: decode, predict, explain.

Photos are decoded by the project's decoder (cnnlab.data.decode) exactly as `cnnlab predict`
decodes files, so the same bytes give the same pixels and the same answer. Bad uploads never
raise: each becomes a row with its error and a kind ("unsupported" when the bytes are not an
image format at all, "bad" when they are a broken, truncated or oversized image), from which the
app picks the status code.

Decoding memory is bounded: before an upload is decoded its peak cost is estimated from its header
(`decode_cost`) and reserved in the service's DecodeBudget (cnnlab.serve.limits); an upload that
can never fit gets an error of kind "too_large" (413), one that finds the budget full after a short
wait an error of kind "busy" (503, retry later). Freed decode memory goes back to the system.

Model calls are serialised by one lock. A Keras model is one object with layer state (built
flags, the Grad-CAM probe, PyTorch's autograd mode is per thread but the modules are shared),
and on 2 cores parallel forward passes would only compete for the same cores; decoding, the
slow part for single photos, runs outside the lock, in as many threads as the server gives.
"""

from __future__ import annotations

import contextlib
import io
import threading
from dataclasses import dataclass

import numpy as np

from cnnlab.data import decode as decoder
from cnnlab.data.decode import BadImage, decode_image, open_checked
from cnnlab.serve.limits import RETRY_AFTER_S, DecodeBudget, default_decode_memory, return_freed_memory

NOT_AN_IMAGE = "not an image"  # the start of decode's reason for bytes in no image format
MEGABYTE = 1024 * 1024

# What decode_image holds at its peak, per pixel of the size it decodes at (after JPEG's draft),
# measured with VmHWM on 4000x4000 images of each mode (Pillow 11, NumPy 2): the decoded image and
# the copy exif_transpose returns (2 x what Pillow stores per pixel: 1 byte for 1, L and P, 2 for
# 16-bit grey, 4 for every other mode), plus to_rgb's copies, plus the decoder's own buffer.
STORAGE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
TRANSPARENT_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
DECODER_BYTES = {"WEBP": 8}  # libwebp decodes into a buffer of its own, which Pillow then copies
DECODE_OVERHEAD = 8 * MEGABYTE  # decoder state, line buffers, the resized result
ESTIMATE_MARGIN = 1.1  # measured peaks were within 3% of the per-pixel sums; allocator slack on top
TRIM_AFTER_BYTES = 64 * MEGABYTE  # decodes this large hand their freed pages back at once


def _conversion_bytes(image) -> int:
    """Bytes per pixel of the copies cnnlab.data.decode.to_rgb makes on the way to RGB."""
    mode = image.mode
    if mode == "RGB":
        return 0
    if mode.startswith("I"):  # 16- and 32-bit grey: a float64 array, its scaled copy, the clipped copy
        return 24
    if mode == "F":  # float64 array and its clipped copy
        return 16
    if mode in TRANSPARENT_MODES or mode == "P" and "transparency" in image.info:
        return 16  # RGBA copy, white background, the composite, its RGB copy
    return 4  # one convert("RGB")


def decode_cost(data: bytes, options) -> tuple[int, str]:
    """(bytes decode_image(data, options) needs at its peak, what the image is), from its header
    only. Raises BadImage as decode_image does for bytes it cannot open."""
    with open_checked(io.BytesIO(data)) as image:
        decoder._apply_draft(image, options)  # JPEG: the reduced size the decoder will really produce
        width, height = image.size
        per_pixel = (2 * STORAGE_BYTES.get(image.mode, 4) + _conversion_bytes(image)
                     + DECODER_BYTES.get(image.format, 0))
        what = f"{width}x{height} {image.format} {image.mode}"
    return int(width * height * per_pixel * ESTIMATE_MARGIN) + DECODE_OVERHEAD, what


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


@dataclass
class Decoded:
    filename: str
    pixels: np.ndarray | None
    error: str | None = None
    kind: str | None = None  # None (good), "unsupported", "bad", "too_large" or "busy"


def decode_upload(upload: Upload, options) -> Decoded:
    """One upload -> the run's input pixels, or the reason it cannot be used. Never raises."""
    try:
        return Decoded(upload.filename, decode_image(upload.data, options))
    except BadImage as reason:
        kind = "unsupported" if str(reason).startswith(NOT_AN_IMAGE) else "bad"
        return Decoded(upload.filename, None, str(reason), kind)
    except Exception as error:  # noqa: BLE001 - a decoder surprise is the upload's problem, not a 500
        return Decoded(upload.filename, None, f"cannot decode ({type(error).__name__}: {error})", "bad")


def _estimate(data: bytes, options) -> tuple[int, str]:
    """The largest decode_cost over `options`; (0, "") when the header cannot be read."""
    try:
        return max(decode_cost(data, each) for each in options)
    except Exception:  # noqa: BLE001 - BadImage and decoder surprises: decode_upload reports them
        return 0, ""


class PredictionService:
    """A Classifier behind a lock, answering with JSON-ready rows; decoding within a memory budget."""

    def __init__(self, classifier, budget: DecodeBudget | None = None):
        self.classifier = classifier
        self.budget = budget if budget is not None else DecodeBudget(default_decode_memory())
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
        """One at a time, each within the budget: a request never holds memory for two photos."""
        decoded = []
        for upload in uploads:
            with self.reserved(upload.data, self.classifier.options) as refusal:
                decoded.append(Decoded(upload.filename, None, *refusal) if refusal
                               else decode_upload(upload, self.classifier.options))
        return decoded

    @contextlib.contextmanager
    def reserved(self, data: bytes, *options):
        """Hold decode memory while `data` is decoded with each of `options` in turn (the largest
        cost is held). Yields None when held, else (error, kind): "too_large" when it could never
        fit, "busy" when the budget stayed full. Bytes the decoder cannot open cost nothing here:
        decode_image says what is wrong with them."""
        cost, what = _estimate(data, options)
        budget = self.budget
        if cost == 0:
            yield None
        elif cost > budget.capacity:
            yield (f"image too large to decode on this server: {what} needs about {cost / MEGABYTE:,.0f} MB, more "
                   f"than its decode memory of {budget.capacity / MEGABYTE:,.0f} MB (cnnlab serve "
                   "--decode-memory-mb); send a smaller image", "too_large")
        elif not budget.acquire(cost):
            yield (f"server busy: {budget.in_use / MEGABYTE:,.0f} of its {budget.capacity / MEGABYTE:,.0f} MB of "
                   f"decode memory in use; retry in {RETRY_AFTER_S} s", "busy")
        else:
            try:
                yield None
            finally:
                budget.release(cost)
                if cost >= TRIM_AFTER_BYTES:
                    return_freed_memory()

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
