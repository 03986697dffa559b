"""Model introspection behind `cnnlab explain`: a trained run's kernels, feature maps and Grad-CAM.

The run's model is rebuilt from the registry and only its weights are loaded (no code from a
file). Each photo is decoded exactly as the run's cache was (size, fit and JPEG draft from
RUN/data.json) and scaled as its recipe says, so the model sees what it saw in training.
Written into the output folder:
- kernels.png: the first convolution's learned kernels, one cell each (see model_figures);
- <photo>-features.png: the first N channels of every convolution's output for the photo;
- <photo>-gradcam.png: the Grad-CAM heatmap over the photo (cnnlab.explain.saliency), titled
  with the predicted class and its probability;
- explain.json: per photo, the probabilities, the predicted class and the files written.
The heatmap is drawn over the photo as the model saw it (the run's input size), not over the
original file. Models without convolutions (the tutorial's MLP) get their predictions and a note.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab.backend import keras
from cnnlab.data.decode import decode_file
from cnnlab.data.photo_file import printable_path
from cnnlab.errors import UserError
from cnnlab.explain import saliency
from cnnlab.recipe.pixels import to_model_input
from cnnlab.runs import Run
from cnnlab.outputs import output_folder

DEFAULT_CHANNELS = 16
NO_CONVOLUTIONS = ("{model} has no convolutional layers: kernels.png, feature maps and Grad-CAM need conv layers; "
                   "wrote its predictions only")


@dataclass(frozen=True)
class ExplainConfig:
    run: str
    images: tuple[str, ...]
    out: str
    layer: str | None = None  # the Grad-CAM layer; None = the last convolution
    channels: int = DEFAULT_CHANNELS  # feature maps shown per layer

    def __post_init__(self):
        if not self.images:
            raise UserError("no photos to explain: give at least one IMAGE")
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) or self.channels < 1:
            raise UserError(f"--channels must be a positive whole number, got {self.channels!r}")


@dataclass
class PhotoExplanation:
    probabilities: np.ndarray  # one per class
    predicted_index: int
    feature_maps: dict[str, np.ndarray] = field(default_factory=dict)  # layer name -> (channels, h, w)
    heatmap: np.ndarray | None = None  # (height, width) of the input, in [0, 1]
    cam_peak: float | None = None  # the Grad-CAM maximum before scaling; 0 = no positive evidence
    score: float | None = None  # the predicted class's logit that Grad-CAM explains


class Explainer:
    """One forward and backward pass per photo through a probe of the model that returns every
    convolution's output, the Grad-CAM layer's output, the output layer's input and the output."""

    def __init__(self, model, layer: str | None = None):
        self.model = model
        self.convolutions = saliency.conv_layers(model)
        if layer is not None:
            self.target = saliency.find_spatial_layer(model, layer)
        else:
            self.target = self.convolutions[-1] if self.convolutions else None
        self.head = saliency.output_head(model)
        if self.target is not None:
            saliency.check_gradient_backend()  # before any work: JAX has no gradient code here
        outputs = [self.target.output] if self.target is not None else []
        outputs += [layer.output for layer in self.convolutions] + [self.head.input, model.outputs[0]]
        # The probe takes the model's input as the model does (a lone tensor, not a one-item list).
        inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
        self.probe = keras.Model(inputs, outputs, name=f"{model.name}_probe")

    def explain(self, pixels: np.ndarray, pixel_scale: str) -> PhotoExplanation:
        """pixels: one decoded (height, width, 3) uint8 photo, scaled and laid out as in training."""
        model_input = to_model_input(pixels[None], pixel_scale)

        def score(outputs):
            return saliency.predicted_class_score(saliency.head_logits(self.head, outputs[-2]))

        if self.target is None:
            outputs = [np.asarray(keras.ops.convert_to_numpy(tensor))
                       for tensor in self.probe(model_input, training=False)]
            gradient = None
        else:
            outputs, gradient = saliency.score_gradient(self.probe, model_input, score, wrt=0)
        logits = np.asarray(keras.ops.convert_to_numpy(saliency.head_logits(self.head, outputs[-2])))[0]
        output = outputs[-1][0].astype(np.float64)
        if output.shape[0] == 1:  # one sigmoid unit: P(class 1); the logit's sign is the decision
            probabilities = np.array([1.0 - output[0], output[0]])
            predicted = int(logits[0] >= 0)
        else:
            probabilities, predicted = output, int(np.argmax(logits))
        explanation = PhotoExplanation(probabilities, predicted)
        maps = outputs[1:-2] if self.target is not None else outputs[:-2]
        for layer, values in zip(self.convolutions, maps):
            explanation.feature_maps[layer.name] = _channels_first(values[0], saliency.channel_axis(layer))
        if self.target is not None:
            axis = saliency.channel_axis(self.target)
            cam = saliency.grad_cam(_channels_first(outputs[0][0], axis), _channels_first(gradient[0], axis))
            explanation.heatmap = saliency.heatmap(cam, *pixels.shape[:2])
            explanation.cam_peak = float(cam.max())
            explanation.score = float(abs(logits[0])) if logits.shape[0] == 1 else float(logits[predicted])
        return explanation


def _channels_first(values: np.ndarray, axis: int) -> np.ndarray:
    """One example's (C, h, w) or (h, w, C) maps -> (C, h, w); axis is the batch output's."""
    return values if axis == 1 else np.moveaxis(values, -1, 0)


def file_stems(paths) -> list[str]:
    """A file-safe, unique name per photo for its output files (cat.1.jpg -> 'cat.1')."""
    stems, used = [], set()
    for path in paths:
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(path).stem).strip("-.") or "photo"
        stem, suffix = base, 2
        while stem in used:
            stem, suffix = f"{base}-{suffix}", suffix + 1
        used.add(stem)
        stems.append(stem)
    return stems


@dataclass
class ExplainResult:
    written: list[Path]
    notes: list[str]
    skipped: list[dict]  # {"path", "reason"} for photos that could not be decoded


def explain_run(config: ExplainConfig) -> ExplainResult:
    """Explain every photo with the run's model; see the module docstring for what is written.

    Bad photos are skipped and listed (ValueError, writing nothing, when no photo is usable).
    """
    from cnnlab.explain import model_figures as figures

    run = Run.open(config.run)  # UserError naming the run when it is not one
    preprocessing = run.preprocessing()
    model = run.build_model()
    classes = run.classes
    options, pixel_scale = preprocessing.decode, preprocessing.pixel_scale
    photos, skipped = [], []
    for path in config.images:
        pixels, _, reason = decode_file(str(path), options)
        if pixels is None:
            skipped.append({"path": printable_path(path), "reason": reason})
        else:
            photos.append((path, pixels))
    if not photos:
        raise UserError("; ".join(f"{item['path']}: {item['reason']}" for item in skipped))
    explainer = Explainer(model, config.layer)  # a bad --layer fails before anything is written

    out = Path(config.out)
    output_folder(out)
    written, notes, records = [], [], []
    first = explainer.convolutions[0] if explainer.convolutions else None
    kernels = None
    if first is None:
        notes.append(NO_CONVOLUTIONS.format(model=model.name))
    else:
        weights = np.asarray(keras.ops.convert_to_numpy(first.kernel))  # (kh, kw, in, out) in every data format
        rows, columns = figures.draw_kernels(out / "kernels.png", weights, first.name, model.name)
        written.append(out / "kernels.png")
        kernels = {"file": "kernels.png", "layer": first.name, "count": int(weights.shape[-1]),
                   "kernel_shape": list(weights.shape[:3]), "grid": [rows, columns]}

    for (path, pixels), stem in zip(photos, file_stems(path for path, _ in photos)):
        explanation = explainer.explain(pixels, pixel_scale)
        label = classes[explanation.predicted_index]
        probability = float(explanation.probabilities[explanation.predicted_index])
        files = []
        if explanation.feature_maps:
            files.append(out / f"{stem}-features.png")
            figures.draw_feature_maps(files[-1], printable_path(Path(path).name), pixels, explanation.feature_maps, config.channels)
        if explanation.heatmap is not None:
            files.append(out / f"{stem}-gradcam.png")
            title = f"{printable_path(Path(path).name)}: predicted {label}, P = {probability:.3f}"
            figures.draw_grad_cam(files[-1], title, pixels, explanation.heatmap, explainer.target.name,
                                  explanation.cam_peak)
        written += files
        records.append({
            "image": printable_path(path), "predicted_class": label, "predicted_index": explanation.predicted_index,
            "probability": probability,
            "probabilities": {name: float(value) for name, value in zip(classes, explanation.probabilities)},
            "grad_cam_score": explanation.score, "grad_cam_peak": explanation.cam_peak,
            "files": [file.name for file in files],
        })

    summary = out / "explain.json"
    summary.write_text(json.dumps({
        "run": str(run.path), "model": model.name, "classes": classes, "backend": keras.backend.backend(),
        "input": {"width": options.width, "height": options.height, "fit": options.fit, "draft": options.draft,
                  "pixel_scale": pixel_scale},
        "decision": "the larger probability (P >= 0.5 for one sigmoid unit)",
        "probability": "of the predicted class; probabilities lists every class",
        "kernels": kernels,
        "feature_layers": [layer.name for layer in explainer.convolutions],
        "feature_channels_shown": config.channels,
        "grad_cam_layer": explainer.target.name if explainer.target is not None else None,
        "notes": notes, "photos": records, "skipped": skipped,
    }, indent=2) + "\n")
    written.append(summary)
    return ExplainResult(written, notes, skipped)
