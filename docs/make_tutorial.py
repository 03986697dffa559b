"""Write docs/tutorial.md, the guided tour of Strika's 2019 tutorial in cnnlab, from real commands.

    python docs/make_tutorial.py --reproduction runs/reproduce [--modern-run RUN]   # the committed tour
    python docs/make_tutorial.py --quick --out /tmp/tour                            # CI: a tiny sample

Every command shown is run here (`python -m cnnlab ...` in a child process) and its output pasted
as printed; every number and figure comes from those commands or from the files a run wrote
(results.json, evaluation.json, metrics.jsonl, predictions-*.npz). A reproduction folder is only
read, never written: the long training (`cnnlab reproduce`, under an hour on 2 cores) is not repeated;
--quick runs `cnnlab reproduce --quick` on a few photos per class into a scratch folder instead.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPOSITORY = DOCS.parent
sys.path.insert(0, str(REPOSITORY / "src"))
sys.path.insert(0, str(DOCS))

import tour_parts as parts  # noqa: E402  (after the path set-up above)

SECTIONS = ("What a convolution is", "Edge filters on a real photo", "Loading the photos and the shape survey",
            "Preparing the data", "The MLP baseline", "One convolutional layer", "Two convolutional layers",
            "Wider layers", "The metrics", "Conclusion", "The modern recipe beside it", "Regenerating this page")
TUTORIAL_STEPS = {"The MLP baseline": ["mlp"], "One convolutional layer": ["conv1"],
                  "Two convolutional layers": ["conv2"], "Wider layers": ["conv2-wide", "conv2-fc512"]}
QUICK_SAMPLE = ["--train", "8", "--val", "4", "--test", "4", "--max-epochs", "1", "--modern", "resnet9-tiny",
                "--baselines", "majority", "--workers", "1"]


class Tour:
    """Runs cnnlab commands and collects the page; `names` shortens paths in what is shown."""

    def __init__(self, out: Path, work: Path, names: dict[str, str]):
        self.out, self.work, self.names = out, work, names
        self.figures = out / "tutorial"
        self.lines: list[str] = []
        self.environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(REPOSITORY / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}

    def shorten(self, text: str) -> str:
        for path, name in sorted(self.names.items(), key=lambda item: -len(item[0])):
            text = text.replace(path, name)
        return text

    def cnnlab(self, *arguments, show: bool = True, table: bool = False) -> str:
        command = [sys.executable, "-m", "cnnlab", *map(str, arguments)]
        done = subprocess.run(command, capture_output=True, text=True, env=self.environment)
        if done.returncode != 0:
            raise SystemExit(f"make_tutorial: `cnnlab {' '.join(map(str, arguments))}` failed:\n{done.stderr[-2000:]}")
        if table:  # Markdown already (`cnnlab compare`): shown as the table it is
            self.add(f"`$ cnnlab {self.shorten(' '.join(map(str, arguments)))}`", "", self.shorten(done.stdout.rstrip()), "")
        elif show:
            self.console(" ".join(map(str, arguments)), done.stdout)
        return done.stdout

    def console(self, arguments: str, output: str) -> None:
        self.add("```console", f"$ cnnlab {self.shorten(arguments)}", self.shorten(output.rstrip()), "```", "")

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def heading(self, title: str) -> None:
        self.add(f"## {title}", "")

    def figure(self, path: Path | None, alt: str) -> None:
        if path is None:
            self.add(f"*(no {alt}: the run has no recorded epochs)*", "")
            return
        parts.shrink_png(path)
        self.add(f"![{alt}](tutorial/{path.name})", "")


def model_lines(tour: Tour, names: list[str]) -> str:
    if not hasattr(tour, "model_listing"):  # builds every model to count FLOPs: run it once
        tour.model_listing = tour.cnnlab("models", show=False).splitlines()
    listing = tour.model_listing
    return "\n".join([listing[0], *(line for line in listing if line.split(" ")[0] in names)])


def row_of(results: dict, model: str) -> dict | None:
    return next((row for row in results["rows"] if row["model"] == model), None)


def number(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def tutorial_steps(tour: Tour, reproduction: Path, results: dict) -> None:
    from cnnlab.runs import Run
    from cnnlab.training.evaluation_text import format_evaluation

    for title, models in TUTORIAL_STEPS.items():
        tour.heading(title)
        tour.add("The registered architecture and the tutorial's recipe, as `cnnlab models` lists them:", "")
        tour.add("```console", "$ cnnlab models", model_lines(tour, models), "```", "")
        for model in models:
            row, run = row_of(results, model), reproduction / "runs" / model
            if row is None or Run(run).evaluation is None:
                tour.add(f"*{model} is not in this reproduction.*", "")
                continue
            published = row.get("published", {})
            said = ", ".join(f"'{value}'" if key == "note" else f"{key} {value}"
                             for key, value in published.items()) or "no figure"
            epochs = f"{row['epochs']} epoch{'s' if row['epochs'] != 1 else ''}"
            tour.add(f"**{model}** ({row['parameters']:,} parameters, {epochs}, "
                     f"{number(row['training_seconds'], 0)} s of training): validation MSE {number(row['val_mse'])}, "
                     f"Pearson {number(row['val_pearson'])}, AUC {number(row['val_auc'])}, accuracy at 0.5 "
                     f"{number(row['val_accuracy_at_0.5'])}, the tutorial's best-of-thresholds accuracy "
                     f"{number(row['val_tutorial_best_accuracy'])}; test accuracy with the threshold chosen on "
                     f"validation {number(row['test_accuracy_at_validation_threshold'])}. The tutorial published: "
                     f"{said}.", "")
            evaluation = Run(run).evaluation
            tour.add(f"What `cnnlab evaluate {tour.shorten(str(run))}` printed (from its stored evaluation.json):", "")
            tour.add("```text", tour.shorten(format_evaluation(evaluation)), "```", "")
            tour.figure(parts.learning_curve_png(run, model, tour.figures / f"curves-{model}.png"),
                        f"{model} learning curves")


def metrics_section(tour: Tour, reproduction: Path, results: dict) -> None:
    tour.heading("The metrics")
    tutorial_rows = [row for row in results["rows"] if row["model"] in sum(TUTORIAL_STEPS.values(), [])
                     and row.get("val_auc") is not None]
    best = max(tutorial_rows, key=lambda row: row["val_auc"])
    study = parts.threshold_study(reproduction / "runs" / best["model"], results["split_hash"],
                                  tour.figures / "thresholds.png")
    if study is None:
        tour.add(f"*{best['model']} has no stored validation and test predictions.*", "")
        return
    tour.add(
        f"The tutorial scores each model by the mean squared error and the Pearson correlation between P(cat) and "
        f"the label, and by the best accuracy over thresholds 0.1 to 0.9. For {best['model']}, the tutorial network "
        f"with the highest validation AUC here, from its stored predictions on {study['val_photos']} validation "
        f"photos: MSE {study['mse']:.3f}, Pearson {study['pearson']:.3f}, accuracy at 0.5 {study['val_at_half']:.3f}, "
        f"and the tutorial's figure, the best of the nine thresholds, {study['best_accuracy']:.3f} at "
        f"{study['best_threshold']:g}.", "",
        f"That threshold was picked on the very photos it is scored on, so it flatters the model: the nine "
        f"accuracies span {study['spread']:.3f} on validation, and the best of them is partly luck. On "
        f"{study['test_photos']} test photos the model never saw, the same threshold gives {study['test_at_best']:.3f}. "
        f"cnnlab chooses the threshold on validation ({study['chosen']:.3f}) and reports it applied unchanged to "
        f"test ({study['test_at_chosen']:.3f}): the honest figure in the last column of every table here.", "")
    tour.figure(study["figure"], "accuracy against the threshold on validation and test")


def conclusion(tour: Tour, results: dict) -> None:
    """The tutorial's conclusion, checked: its best model's published accuracy against ours."""
    key = "test_accuracy_at_validation_threshold"
    rows = [row for row in results["rows"] if row["model"] in sum(TUTORIAL_STEPS.values(), [])]
    best = max(rows, key=lambda row: row.get(key) or 0)
    published = row_of(results, "conv2-fc512") or {}
    tour.add(f"The tutorial concludes that its deepest, widest network does best ({published.get('published', {}).get('accuracy', '-')} "
             f"best-threshold accuracy on validation). Here the best tutorial network on unseen test photos is "
             f"**{best['model']}** with {number(best.get(key))} (threshold chosen on validation); conv2-fc512 reaches "
             f"{number(published.get('val_tutorial_best_accuracy'))} by the tutorial's own measure and "
             f"{number(published.get(key))} on test.", "")


def build(tour: Tour, photos: Path, reproduction: Path, modern_run: Path | None, photo: Path,
          command_line: str) -> str:
    results = json.loads((reproduction / "results.json").read_text())
    config = json.loads((reproduction / "reproduce-config.json").read_text())
    tour.add("# A guided tour: Strika's CNN tutorial in cnnlab", "",
             "L. Strika's 2019 tutorial *Convolutional Neural Networks: a Python tutorial using TensorFlow and "
             "Keras* classifies Kaggle's Dogs vs. Cats photos. This page follows its sections in order and shows "
             "the cnnlab command for each step with what it printed, then the modern recipe beside it.", "",
             f"*Generated by `{tour.shorten(command_line)}` from a {results['mode']} reproduction "
             f"(`{tour.shorten(str(reproduction))}`, {results['images']['train']:,} training, "
             f"{results['images']['val']:,} validation and {results['images'].get('test', 0):,} test photos). "
             "Do not edit by hand: every number and figure below was computed by that script.*", "")

    tour.heading("What a convolution is")
    example = parts.worked_convolution()
    tour.add(
        "A convolutional layer slides a small kernel over the picture; at each position it multiplies the pixels "
        "under the kernel by the kernel's weights and adds them up (strictly a cross-correlation: Keras does not "
        "flip the kernel). Here a 6x6 picture, bright on the left, meets the tutorial's vertical-edge kernel:", "",
        "```text", "picture", example["image"], "", "kernel (vertical edge)", example["kernel"], "",
        f"result ({example['shape_out'][0]}x{example['shape_out'][1]}: a 3x3 kernel without padding loses a "
        "border pixel on each side)", example["result"], "```", "",
        f"Position (row {example['row']}, column {example['column']}) covers the window "
        f"`{' / '.join(example['window'].splitlines())}` (row by row): {example['products']} = {example['check']}. The result is large where the picture changes "
        "from bright to dark going right, and 0 where it is flat or changes only vertically.", "")

    tour.heading("Edge filters on a real photo")
    tour.add("The tutorial applies a vertical and a horizontal edge filter to a photo of kittens. `cnnlab filters` "
             "does the same on any photo (here a cat from the shared photos), with the same NumPy cross-correlation:", "")
    tour.cnnlab("filters", photo, "--out", tour.work / "filters")
    shutil.copy(tour.work / "filters" / "filters.png", tour.figures / "filters.png")
    tour.figure(tour.figures / "filters.png", "the photo and its vertical and horizontal edge responses")

    tour.heading("Loading the photos and the shape survey")
    tour.add("The tutorial opens every photo with PIL and counts the shapes: most are about 500x375, so it "
             "resizes all of them to 94 wide by 125 tall. `cnnlab survey` reads only the headers:", "")
    tour.cnnlab("survey", photos, "--top", 5)

    tour.heading("Preparing the data")
    tour.add("The tutorial keeps the first 2,048 cats and dogs for training and the last 512 of each for "
             "validation, labels cat = 1, and feeds raw 0-255 pixels. `cnnlab prepare` decodes each photo once "
             "into a memory-mapped cache with that split (and test photos from the ids in between):", "")
    tour.cnnlab("prepare", photos, "--out", tour.work / "cache", "--split", "tutorial", "--train", config["train_per_class"],
                "--val", config["val_per_class"], "--test", config["test_per_class"])
    tutorial_steps(tour, reproduction, results)
    metrics_section(tour, reproduction, results)

    tour.heading("Conclusion")
    tour.add("All of the tutorial's models side by side, its published figures in parentheses (`cnnlab compare` "
             "reads the saved results only):", "")
    tour.cnnlab("compare", reproduction, table=True)
    conclusion(tour, results)
    tour.add("The full interactive picture (learning curves, ROC curves, confusion matrices, the most confidently "
             f"wrong photos) is the reproduction's `{tour.shorten(str(reproduction / 'report.html'))}` "
             "(`cnnlab report`).", "")

    tour.heading("The modern recipe beside it")
    modern = modern_run or next((reproduction / "runs" / row["model"] for row in results["rows"]
                                 if row.get("family") == "modern"), None)
    tour.add("What has changed since 2019: batch normalisation, residual blocks and global average pooling "
             "instead of a huge dense layer; pixels scaled to 0-1; AdamW with warm-up and a cosine schedule; "
             "augmentation, label smoothing and test-time flips. The registered modern models:", "")
    tour.add("```console", "$ cnnlab models", model_lines(tour, ["resnet9", "resnet9-tiny"]), "```", "")
    if modern is None:
        tour.add("*No modern run was given (`--modern-run`); train one with `cnnlab train resnet9 --cache CACHE "
                 "--out RUN`.*", "")
    else:
        from cnnlab.runs import Run

        modern_run = Run(modern)
        modern_config, decode, state = modern_run.config, modern_run.data.get("decode", {}), modern_run.state
        tour.add(f"A modern run, `{tour.shorten(str(modern))}` (a `cnnlab train {modern_config['train']['model']} "
                 f"--cache CACHE --out RUN` folder: {state.get('epochs_done')} epochs on "
                 f"{decode.get('width')}x{decode.get('height')} photos, {decode.get('fit')} fit), compared with the "
                 "best tutorial network:", "")
        tutorial_rows = [row for row in results["rows"] if row["model"] in sum(TUTORIAL_STEPS.values(), [])]
        best = max(tutorial_rows, key=lambda row: row.get("test_accuracy_at_validation_threshold") or 0)
        tour.cnnlab("compare", reproduction / "runs" / best["model"], modern, table=True)
        tour.figure(parts.learning_curve_png(modern, modern_config["train"]["model"], tour.figures / "curves-modern.png"),
                    "modern learning curves")

    tour.heading("Regenerating this page")
    tour.add("```sh", "python docs/make_tutorial.py --reproduction runs/reproduce "
             "--modern-run RUN   # after `make run` (and `cnnlab train resnet9 ...`)",
             "python docs/make_tutorial.py --quick --out /tmp/tour   # what CI runs: a few photos, one epoch",
             "```", "")
    return "\n".join(tour.lines).rstrip() + "\n"


def shown_path(path: Path, reproduction: Path) -> str:
    """A path as seen from the checkout that holds the reproduction (runs/reproduce -> its parent's
    parent), so the page names real folders without this machine's absolute paths."""
    checkout = reproduction.parent.parent
    return os.path.relpath(path, checkout) if path.is_relative_to(checkout) else path.name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", default=os.environ.get("CNNLAB_DATA", str(REPOSITORY.parent / "shared" / "datasets"
                                                                               / "dogs-vs-cats" / "train")))
    parser.add_argument("--reproduction", help="a finished `cnnlab reproduce` folder (read only)")
    parser.add_argument("--modern-run", help="an evaluated modern run folder (e.g. `cnnlab train resnet9`)")
    parser.add_argument("--photo", help="the photo for the filter demo (default: the first cat by id)")
    parser.add_argument("--out", default=str(DOCS), help="where tutorial.md and tutorial/ go (default: docs/)")
    parser.add_argument("--work", help="scratch folder for the commands' outputs (default: a temporary one)")
    parser.add_argument("--quick", action="store_true", help="run `cnnlab reproduce --quick` on a few photos first")
    arguments = parser.parse_args(argv)
    photos = Path(arguments.photos)
    if not photos.is_dir():
        parser.error(f"--photos {photos}: no such folder")
    if not arguments.quick and not arguments.reproduction:
        parser.error("pass --reproduction DIR (a finished `cnnlab reproduce` folder) or --quick")
    out = Path(arguments.out)
    work = Path(arguments.work) if arguments.work else Path(tempfile.mkdtemp(prefix="cnnlab-tour-"))
    (out / "tutorial").mkdir(parents=True, exist_ok=True)
    for old in (out / "tutorial").glob("*.png"):
        old.unlink()  # a figure the new page does not name must not linger
    photo = Path(arguments.photo) if arguments.photo else min(photos.glob("cat.*.jpg"),
                                                             key=lambda path: int(path.name.split(".")[1]))
    shown_out = "docs" if out.resolve() == DOCS else "OUT"
    names = {str(photos): "PHOTOS", str(work): "WORK", str(out): shown_out, str(out.resolve()): shown_out,
             str(REPOSITORY) + "/": ""}
    tour = Tour(out, work, names)
    if arguments.quick:
        reproduction = work / "reproduce"
        tour.cnnlab("reproduce", photos, "--out", reproduction, "--quick", *QUICK_SAMPLE, show=False)
    else:
        reproduction = Path(arguments.reproduction).resolve()
        names[str(reproduction)] = shown_path(reproduction, reproduction)
    modern_run = Path(arguments.modern_run).resolve() if arguments.modern_run else None
    if modern_run:
        names[str(modern_run)] = shown_path(modern_run, reproduction)
    command_line = "python docs/make_tutorial.py " + " ".join(argv if argv is not None else sys.argv[1:])
    page = build(tour, photos, reproduction, modern_run, photo, command_line)
    missing = [title for title in SECTIONS if f"## {title}\n" not in page]
    if missing:
        raise SystemExit(f"make_tutorial: sections missing from the page: {', '.join(missing)}")
    (out / "tutorial.md").write_text(page)
    print(f"{out / 'tutorial.md'}: {len(page.splitlines())} lines, "
          f"{len(list((out / 'tutorial').glob('*.png')))} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
