"""`cnnlab predict`: a trained run's predictions for files, folders and globs, as a table, CSV or JSON.

The same rules as every cnnlab.cli module: heavy imports inside the
handler, user errors as UserError (one line, exit status 2). Files that cannot be decoded are
rows with their error, not failures of the command: the status is 1 when any file failed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cnnlab.errors import UserError

# The same values as cnnlab.inference.classifier.ENGINES, written out so that `cnnlab --help`
# imports neither NumPy nor Pillow.
ENGINES = ("auto", "onnx", "keras")
EXIT_STATUS = ("exit status: 0 when every file was predicted; 1 when some file could not be read or decoded "
               "(its row carries the error, the other files are still predicted); 2 for a usage error "
               "(no such RUN, bad options, no photos found).")


def command_predict(arguments) -> int:
    from cnnlab.inference.inputs import expand_paths
    from cnnlab.runs import Run

    if arguments.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {arguments.batch_size}")
    Run.open(arguments.run)  # before Keras is imported: a wrong RUN fails at once
    sources = expand_paths(arguments.paths)
    if not sources:
        raise UserError(f"no photos found in {' '.join(arguments.paths)} (image extensions: .jpg .png ...)")
    out = Path(arguments.out) if arguments.out else None
    if out is not None and out.is_dir():
        raise UserError(f"--out {out} is a folder; name the file to write, e.g. --out {out / 'predictions.csv'}")
    if out is not None and not out.parent.is_dir():
        raise UserError(f"--out {out}: folder {out.parent} does not exist")
    # Written beside FILE and renamed into place at the end: a cut run never leaves half a file as
    # FILE. Opened before the model loads, so an --out that cannot be written fails at once.
    temporary = out.with_name(f".{out.name}.{os.getpid()}.partial") if out is not None else None
    try:
        stream = open(temporary, "w", newline="", encoding="utf-8") if temporary is not None else sys.stdout
    except OSError as error:
        raise UserError(f"--out {out}: cannot write there ({error.strerror or error}); choose a writable --out") from None

    from cnnlab.inference.classifier import load
    from cnnlab.inference.writers import make_writer
    from cnnlab.progress import Progress

    try:
        classifier = load(arguments.run, threshold=arguments.threshold, engine=arguments.engine,
                          photos=[source.path for source in sources if source.problem is None][:64])
        for note in classifier.notes:
            print(f"cnnlab predict: note: {note}", file=sys.stderr)
        header = {"run": classifier.run, "engine": classifier.engine, "classes": classifier.classes,
                  "threshold": classifier.threshold,
                  "threshold_source": classifier.threshold_source,
                  "decision": ("class 1 when P(class 1) > threshold" if classifier.threshold is not None
                               else "the most probable class"),
                  "input": {"width": classifier.options.width, "height": classifier.options.height,
                            "fit": classifier.options.fit, "draft": classifier.options.draft,
                            "pixel_scale": classifier.pixel_scale, "test_time_flip": classifier.tta_flip}}
        progress = Progress(len(sources), "predict", stream=sys.stderr)
        # Rows and the bar share a terminal only when rows go to stdout; then the bar is cleared first.
        clear_bar = progress.live and out is None and sys.stdout.isatty()
        writer = make_writer(arguments.format, stream, classifier.classes, classifier.threshold, header,
                             paths=[source.path for source in sources])
        writer.begin()
        for batch in classifier.predict_batches(sources, arguments.batch_size):
            if clear_bar:
                sys.stderr.write("\r\x1b[K")
            writer.write(batch)
            progress.update(len(batch), postfix=f"{writer.failed} failed" if writer.failed else None)
        writer.end()
        if temporary is not None:
            stream.close()
            os.replace(temporary, out)
    finally:
        if temporary is not None and not stream.closed:
            stream.close()
            temporary.unlink(missing_ok=True)
    progress.close()
    if writer.failed:
        print(f"cnnlab predict: {writer.failed} of {writer.count} files could not be predicted "
              "(see the error column)", file=sys.stderr)
    return 1 if writer.failed else 0


def register(commands) -> None:
    """Add `predict` to the CLI's subcommands."""
    predict = commands.add_parser(
        "predict", help="a trained run's label and probabilities for photos, folders or globs",
        description="Predict with RUN's best weights on every photo named: files, folders (recursive: image "
                    "extensions only, hidden folders skipped, natural order) or globs (expanded by cnnlab too). "
                    "Photos are decoded and scaled exactly as the run's training data, in batches, so thousands "
                    "stream in constant memory. One row per file, in input order: path, label, the probability "
                    "of each class, the threshold used and any error. Two-class runs use the threshold chosen "
                    "on validation (RUN/evaluation.json; 0.5 with a note if the run was never evaluated); runs "
                    "with more classes take the most probable class.",
        epilog=EXIT_STATUS)
    predict.add_argument("run", metavar="RUN", help="run folder written by `cnnlab train`")
    predict.add_argument("paths", nargs="+", metavar="PATH", help="photos, folders of photos or glob patterns")
    predict.add_argument("--format", choices=("table", "csv", "json"), default="table",
                         help="table for reading, csv or json for programs (default: table)")
    predict.add_argument("--out", metavar="FILE", help="write the rows to FILE instead of standard output")
    predict.add_argument("--batch-size", type=int, default=64, metavar="N",
                         help="photos decoded and predicted at a time (default: 64)")
    predict.add_argument("--threshold", type=float, metavar="T",
                         help="two-class runs: predict the second class when its probability > T "
                              "(default: the validation-chosen threshold)")
    predict.add_argument("--engine", choices=ENGINES, default="auto",
                         help="onnx: the run's ONNX export (RUN/best.onnx) in ONNX Runtime, without Keras; it is made "
                              "on first use and whenever the best weights change (that call loads Keras once, "
                              "and the export must match the Keras model within 1e-4); keras: the weights in "
                              "Keras; auto: onnx when the export exists or can be made, else keras (default: auto)")
    predict.set_defaults(handler=command_predict)
