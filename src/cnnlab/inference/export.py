"""`cnnlab export`: a trained run as a standalone file (ONNX, .keras or a TensorFlow SavedModel)
that carries its preprocessing, checked against the run's own model before it is kept.

The exported model is the raw network: float32 input in the run's layout (channels_first here:
batch x 3 x height x width) with pixels scaled as the recipe says, output one sigmoid column
(P(class 1)) or one softmax column per class. Everything a consumer needs to feed it and read
it travels with it as metadata (see `export_metadata`): input size, fit, JPEG draft, pixel
scale, layout, test-time flip, class names, threshold and the decision rule. ONNX keeps it in
the model's metadata_props (key "cnnlab", plus one key per field); .keras inside the archive
(cnnlab.json); a SavedModel as assets/cnnlab.json. Every format also gets PATH.json beside it.

Parity: the export is written to a temporary name, reloaded by its own runtime (ONNX Runtime,
Keras, TensorFlow) and run on real photos beside the original model through the same
preprocessing (`Classifier.probabilities` with the other forward function). It is moved into
place only when the largest probability difference is <= the tolerance and every label agrees;
otherwise nothing is left at PATH and ValueError says by how much it failed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnlab.data.decode import decode_file
from cnnlab.errors import UserError
from cnnlab.inference import export_formats as formats
from cnnlab.inference.export_formats import INPUT_NAME, OUTPUT_NAME
from cnnlab.inference.inputs import expand_paths
from cnnlab.runs import Run
from cnnlab.runs.files import write_json
from cnnlab.version import __version__

FORMATS = ("onnx", "keras", "savedmodel")
DEFAULT_TOLERANCE = 1e-4
DEFAULT_PARITY_PHOTOS = 16


@dataclass(frozen=True)
class ExportConfig:
    run: str
    format: str
    out: str
    photos: tuple[str, ...] = ()  # parity photos (files, folders, globs); () = from the run's cache
    parity_photos: int = DEFAULT_PARITY_PHOTOS
    tolerance: float = DEFAULT_TOLERANCE

    def __post_init__(self):
        if self.format not in FORMATS:
            raise UserError(f"unknown --format {self.format!r}; choose one of {', '.join(FORMATS)}")
        if self.format == "keras" and not self.out.endswith(".keras"):
            raise UserError(f"--out {self.out}: a Keras file must end in .keras (Keras refuses other names)")
        if isinstance(self.parity_photos, bool) or not isinstance(self.parity_photos, int) or self.parity_photos < 1:
            raise UserError(f"--parity-photos must be a positive whole number, got {self.parity_photos!r}")
        if not 0.0 <= self.tolerance < 1.0:
            raise UserError(f"--tolerance must be between 0 and 1, got {self.tolerance!r}")


@dataclass
class ExportResult:
    path: Path
    sidecar: Path
    format: str
    photos_checked: int
    max_difference: float
    metadata: dict = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.path}: {self.format} export; parity on {self.photos_checked} photos, largest probability "
                f"difference {self.max_difference:.2e}, identical labels; metadata in {self.sidecar.name} too")


def sidecar_path(out: Path) -> Path:
    """PATH.json: the metadata beside the export, for programs that cannot open the format."""
    return out.with_name(out.name + ".json")


def export_metadata(classifier, config: dict) -> dict:
    """What a consumer of the exported model needs to feed it and read its output."""
    options = classifier.options
    layout = config.get("image_data_format", "channels_first")
    shape = [None, 3, options.height, options.width] if layout == "channels_first" else \
        [None, options.height, options.width, 3]
    two_classes = classifier.threshold is not None
    return {
        "format_version": 1, "cnnlab_version": __version__, "run": classifier.run,
        "model": config["train"]["model"], "classes": classifier.classes,
        "threshold": classifier.threshold, "threshold_source": classifier.threshold_source,
        "decision": ("class 1 when P(class 1) > threshold" if two_classes else "the most probable class"),
        "input": {"name": INPUT_NAME, "shape": shape, "dtype": "float32", "layout": layout,
                  "width": options.width, "height": options.height, "fit": options.fit, "draft": options.draft,
                  "pixel_scale": classifier.pixel_scale,
                  "pixel_scale_means": "unit: value / 255" if classifier.pixel_scale == "unit" else "raw: 0-255",
                  "channel_order": "RGB", "test_time_flip": classifier.tta_flip},
        "output": {"name": OUTPUT_NAME,
                   "means": ("P(class 1), one sigmoid column" if two_classes or len(classifier.classes) == 2
                             else "one softmax column per class, in class order")},
    }


# ---- parity photos ------------------------------------------------------------------------------

def cache_photo_paths(run: Run) -> list[str]:
    """Photos listed in the run's cache, validation first, then test, then training."""
    from cnnlab.data.reader import open_cache

    try:
        cache = open_cache(run.cache_path)
    except (OSError, ValueError, KeyError, TypeError):
        return []
    rows = [row for split in ("val", "test", "train") for row in cache.indices(split)]
    return cache.paths(rows)


def parity_pixels(classifier, run: Run, photos: tuple[str, ...], count: int, fallback=()) -> np.ndarray:
    """Up to `count` real photos decoded as the run's data was; ValueError when there are none.
    photos: the ones to use; else the run's cache's, else (its cache gone) those in `fallback`."""
    if photos:
        candidates = [source.path for source in expand_paths(photos) if source.problem is None]
        where = f"--photos {' '.join(photos)}"
    else:
        candidates = cache_photo_paths(run) or [str(path) for path in fallback]
        where = f"the photos listed in {run.path}'s cache" + (" or the photos given" if fallback else "")
    pixels = []
    for path in candidates:
        decoded, _, reason = decode_file(path, classifier.options)
        if reason is None:
            pixels.append(decoded)
        if len(pixels) == count:
            break
    if not pixels:
        raise UserError(f"no readable photos to check the export on in {where}; pass some with --photos")
    return np.stack(pixels)


# ---- the command ---------------------------------------------------------------------------------

def _temporary(out: Path) -> Path:
    """A name beside PATH (same file system, so the final rename is atomic), same extension."""
    return out.with_name(f".{out.stem}.{os.getpid()}.partial{out.suffix}")


def _remove(path: Path) -> None:
    if path.is_dir():
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def check_parity(classifier, forward, pixels: np.ndarray, tolerance: float, what: str) -> float:
    """Largest probability difference between the run's model and `forward`; ValueError if off."""
    expected = classifier.probabilities(pixels)
    got = classifier.probabilities(pixels, forward=forward)
    difference = float(np.max(np.abs(expected - got)))
    labels_expected = [classifier.decide(row) for row in expected]
    labels_got = [classifier.decide(row) for row in got]
    disagreements = sum(a != b for a, b in zip(labels_expected, labels_got))
    if not np.isfinite(difference) or difference > tolerance or disagreements:
        raise UserError(f"the {what} export does not match the run's model on {len(pixels)} photos: largest "
                         f"probability difference {difference:.3g} (allowed {tolerance:g}), {disagreements} "
                         "labels differ; nothing was written")
    return difference


def check_replaceable(out: Path, format: str) -> None:
    """An existing PATH is replaced only when it is what this format writes: never a folder of
    other things (a SavedModel is a folder, so a mistyped --out could otherwise delete one)."""
    if not out.exists():
        return
    if format == "savedmodel":
        if not out.is_dir() or not (out / "saved_model.pb").is_file():
            raise UserError(f"--out {out} exists and is not a SavedModel; choose a new name or remove it")
    elif out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name (e.g. {out / ('model.' + format)})")


def export_run(config: ExportConfig) -> ExportResult:
    """Export config.run to config.out in config.format, checked on real photos first."""
    from cnnlab.inference.classifier import load

    run = Run.open(config.run)
    out = Path(config.out)
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: folder {out.parent} does not exist")
    check_replaceable(out, config.format)
    if config.format == "savedmodel":
        from cnnlab.inference.savedmodel import check_tensorflow

        check_tensorflow()  # before any loading: the one-line install hint comes first
    classifier = load(run.path)
    classifier.model = float32_model(classifier.model, run)
    metadata = export_metadata(classifier, run.config)
    pixels = parity_pixels(classifier, run, config.photos, config.parity_photos)
    temporary = _temporary(out)
    try:
        if config.format == "onnx":
            formats.export_onnx(classifier, temporary, metadata)
            forward = formats.onnx_forward(temporary)
        elif config.format == "keras":
            formats.export_keras(classifier, temporary, metadata)
            forward = formats.keras_forward(temporary)
        else:
            from cnnlab.inference.savedmodel import export_savedmodel

            forward = export_savedmodel(run.path, temporary, metadata, to_model_inputs(classifier, pixels))
        difference = check_parity(classifier, forward, pixels, config.tolerance, config.format)
        _remove(out)
        os.replace(temporary, out)
    finally:
        _remove(temporary)
    sidecar = sidecar_path(out)
    write_json(sidecar, metadata)
    return ExportResult(out, sidecar, config.format, len(pixels), difference, metadata)


def make_run_export(run: Run, photos=(), parity_photos: int = DEFAULT_PARITY_PHOTOS,
                    tolerance: float = DEFAULT_TOLERANCE) -> tuple[Path, dict]:
    """The run's own ONNX export of its best weights, made and kept in the run folder through
    Run.store_onnx_export: exactly `cnnlab export --format onnx`'s file and parity check (the
    run's cache photos, else `photos`), its record naming the weights it was made from, so that
    `cnnlab predict` reuses it until they change. Imports Keras; returns (path, record)."""
    from cnnlab.inference.classifier import load

    classifier = load(run.path)
    classifier.model = float32_model(classifier.model, run)
    pixels = parity_pixels(classifier, run, (), parity_photos, fallback=photos)

    def make(temporary: Path, signature: dict) -> dict:
        metadata = {**export_metadata(classifier, run.config), "weights_file": signature}
        formats.export_onnx(classifier, temporary, metadata)
        difference = check_parity(classifier, formats.onnx_forward(temporary), pixels, tolerance, "onnx")
        return {**metadata, "parity": {"photos": len(pixels), "max_difference": difference, "tolerance": tolerance}}

    return run.store_onnx_export(make)


def float32_model(model, run: Run):
    """The model itself when it computes in float32, else a float32 copy with its weights.

    A run trained in mixed_bfloat16 (the modern recipe on CPUs with AMX, and on GPUs) keeps float32
    weights but computes in bfloat16, and ONNX Runtime's CPU kernels have no bfloat16 convolution.
    Every format gets the float32 copy, and the parity check compares the export with that copy."""
    if run.precision == "float32":
        return model
    return run.build_model(precision="float32")


def to_model_inputs(classifier, pixels: np.ndarray) -> list[np.ndarray]:
    """The model inputs the parity check will ask for: the photos, and their mirror images with TTA."""
    from cnnlab.recipe.pixels import to_model_input, width_axis

    inputs = to_model_input(pixels, classifier.pixel_scale)
    if not classifier.tta_flip:
        return [inputs]
    return [inputs, np.ascontiguousarray(np.flip(inputs, axis=width_axis()))]
