"""Write docs/tour.ipynb, the guided tour of Strika's tutorial as a Jupyter notebook.

    python docs/make_notebook.py           # writes docs/tour.ipynb, cleared (no outputs)
    python docs/make_notebook.py --check   # exit 1 when docs/tour.ipynb is not what this script writes

The notebook takes the same steps, in the same sections, as docs/tutorial.md (make_tutorial.py's
SECTIONS and TUTORIAL_STEPS), through cnnlab's Python API instead of `cnnlab` commands: no shell
escapes, so it runs wherever `import cnnlab` works. Its first code cell reads its settings from
environment variables, so the same notebook runs the real tour or, in CI, a tiny sample:

    CNNLAB_TOUR_DATA   the photos (default: ../../shared/datasets/dogs-vs-cats/train, seen from docs/)
    CNNLAB_TOUR_WORK   where caches and runs go (default: ../runs/tour, git-ignored)
    CNNLAB_TOUR_QUICK  non-empty: 8/4/4 photos per class, one epoch, 24x32 pictures, resnet9-tiny

tests/test_notebook.py executes it in a real kernel with CNNLAB_TOUR_QUICK=1 on a few photos, and
checks that the committed file is exactly what this script writes, so neither can rot.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from textwrap import dedent

DOCS = Path(__file__).resolve().parent
NOTEBOOK = DOCS / "tour.ipynb"
sys.path.insert(0, str(DOCS))

from make_tutorial import SECTIONS, TUTORIAL_STEPS  # noqa: E402  (after the path set-up above)

# Sections the notebook has beyond the page's, and where: before the page's last one.
OWN_PHOTOS = "Your own photos"
NOTEBOOK_SECTIONS = (*SECTIONS[:-1], OWN_PHOTOS, SECTIONS[-1])

# What the tutorial says about each of its models, before the notebook trains it.
MODEL_STORY = {
    "mlp": "The tutorial starts without any convolution: the photo's pixels flattened into one long vector, a "
           "dense layer of 512 and a sigmoid giving P(cat), trained on the mean squared error. It published that "
           "this is about as good as random guessing.",
    "conv1": "One convolutional layer of 24 3x3 filters and a max-pooling layer before the dense layers: the "
             "filters now learn local patterns like the edge kernels above, wherever they appear in the photo.",
    "conv2": "Two convolution and pooling stages: the second layer's filters see the first layer's patterns "
             "over a wider window of the photo.",
    "conv2-wide": "The tutorial then widens the layers: more filters per convolution (128)...",
    "conv2-fc512": "...and its best network: 64 then 128 filters and two dense layers of 512, about 42 million "
                   "parameters, nearly all of them in the first dense layer.",
}

SETTINGS = '''
import os
from pathlib import Path

import cnnlab
from cnnlab.experiments.reproduce import ReproduceConfig

# Relative paths are seen from this notebook's folder (docs/), where Jupyter starts its kernel.
DATA = Path(os.environ.get("CNNLAB_TOUR_DATA", "../../shared/datasets/dogs-vs-cats/train"))
WORK = Path(os.environ.get("CNNLAB_TOUR_WORK", "../runs/tour"))  # caches and runs (git-ignored)
QUICK = os.environ.get("CNNLAB_TOUR_QUICK", "") not in ("", "0")

if QUICK:  # a smoke test (tests/test_notebook.py): a few photos per class, one epoch, small pictures
    PER_CLASS = {"train": 8, "val": 4, "test": 4}
    SIZE, EPOCHS, MODERN = "24x32", 1, "resnet9-tiny"
else:  # the tutorial's split, as `cnnlab reproduce` takes it; each recipe's own epochs
    tutorial = ReproduceConfig(str(DATA), str(WORK)).resolved()
    PER_CLASS = {"train": tutorial.train_per_class, "val": tutorial.val_per_class, "test": tutorial.test_per_class}
    SIZE, EPOCHS, MODERN = "94x125", None, "resnet9"
if not DATA.is_dir():
    raise FileNotFoundError(f"no photos at {DATA.resolve()}: set CNNLAB_TOUR_DATA to a Dogs vs. Cats train folder")
WORK.mkdir(parents=True, exist_ok=True)


def train_once(model, cache, **settings):
    """Train `model` into WORK/runs/MODEL; a run an earlier pass of this notebook finished is reused,
    one it left unfinished is resumed (rerunning the notebook never repeats hours of training)."""
    out = WORK / "runs" / model
    if out.exists() and cnnlab.open_run(out).state.get("finished"):
        return cnnlab.open_run(out)
    # any_input_size: the quick sample's small pictures are not the recipe's size, on purpose.
    return cnnlab.train(model, cache=cache, out=out, epochs=EPOCHS, resume=out.exists(),
                        any_input_size=QUICK and model != MODERN, **settings)


print(f"photos {DATA}, work {WORK}, {'QUICK' if QUICK else 'full'}: {PER_CLASS} per class, "
      f"{SIZE} pictures, epochs {EPOCHS or 'of each recipe'}")
'''

CONVOLUTION = '''
import numpy as np

from cnnlab.explain.convolution import correlate
from cnnlab.explain.kernels import KERNELS

picture = np.zeros((6, 6))
picture[:, :3] = 9  # a vertical edge between columns 2 and 3
picture[4:, :] += 1  # and a faint horizontal one near the bottom
kernel = np.asarray(KERNELS["vertical-edge"].matrix)
result = correlate(picture, kernel)  # as a Keras Conv2D computes it: no kernel flip, no padding
print("picture", picture, "kernel (vertical edge)", kernel, f"result {result.shape}", result, sep="\\n")
window = picture[0:3, 1:4]  # the window under the kernel at output position (row 0, column 1)
print(f"by hand at (0, 1): sum(window * kernel) = {np.sum(window * kernel):g} = result[0, 1] = {result[0, 1]:g}")
'''

FILTERS = '''
from IPython.display import Image

from cnnlab.explain.filters import FiltersConfig, explore_filters

photo = min(DATA.glob("cat.*.jpg"), key=lambda path: int(path.name.split(".")[1]))  # the first cat by id
written = explore_filters(FiltersConfig(str(photo), str(WORK / "filters")))  # the tutorial's two edge kernels
Image(filename=written[0])
'''

SURVEY = '''
from cnnlab.data.survey import format_survey, survey

print(format_survey(survey(DATA, top=5)))
'''

PREPARE = '''
cache = cnnlab.prepare(DATA, WORK / "cache", size=SIZE, split="tutorial", **PER_CLASS)
cache
'''

METRICS = '''
from cnnlab.metrics import (TUTORIAL_THRESHOLDS, accuracy_at, best_accuracy_over_thresholds, choose_threshold,
                            mean_squared_error, pearson_correlation)

best = max(runs, key=lambda name: runs[name].run.evaluation["splits"]["val"].get("roc_auc") or 0)
run = runs[best].run  # its stored predictions, written by evaluate() for the best weights
validation, test = run.stored_predictions("val"), run.stored_predictions("test")
print(f"{best}, the tutorial network with the highest validation AUC, on {len(validation.labels)} validation photos:")
print(f"MSE {mean_squared_error(validation.labels, validation.probabilities):.3f}, "
      f"Pearson {pearson_correlation(validation.labels, validation.probabilities) or float('nan'):.3f}")
print("threshold  validation  test")
for threshold in TUTORIAL_THRESHOLDS:
    print(f"{threshold:9g}  {accuracy_at(validation.labels, validation.probabilities, threshold):10.3f}  "
          f"{accuracy_at(test.labels, test.probabilities, threshold):4.3f}")
accuracy, threshold = best_accuracy_over_thresholds(validation.labels, validation.probabilities)
chosen = choose_threshold(validation.labels, validation.probabilities)
print(f"the tutorial's figure: {accuracy:.3f} at {threshold:g}, picked on validation; "
      f"the same threshold on test: {accuracy_at(test.labels, test.probabilities, threshold):.3f}")
print(f"cnnlab's: threshold {chosen:.3f} chosen on validation, "
      f"applied unchanged to test: {accuracy_at(test.labels, test.probabilities, chosen):.3f}")
'''

CONCLUSION = '''
from IPython.display import Markdown

Markdown(cnnlab.compare(list(runs.values())).text)  # as `cnnlab compare` prints it: a Markdown table
'''

MODERN_TRAIN = '''
from cnnlab.models import get_model_spec

print(get_model_spec(MODERN).description)
# The same photos in the same roles, decoded at the modern model's own input size and fit.
modern_cache = cnnlab.prepare(DATA, WORK / f"cache-{MODERN}", model=MODERN, split="tutorial", **PER_CLASS)
modern = train_once(MODERN, modern_cache)
modern.evaluate()
'''

OWN_PHOTOS_CODE = '''
from cnnlab.data.reader import open_cache

split = open_cache(modern_cache)
test_rows = split.indices("test")  # photos the model never trained on nor chose its weights by
photos = [path for label in range(len(split.classes))  # three of each class
          for path in split.paths(test_rows[split.labels[test_rows] == label][:3])]
for prediction in modern.predict(photos):
    print(f"{Path(prediction.path).name:16} {prediction.label or prediction.error:5} "  # error: why it failed
          + ", ".join(f"P({name}) {value:.2f}" for name, value in prediction.probabilities.items()))
'''


def code(text: str) -> tuple[str, str]:
    return "code", dedent(text).strip("\n")


def markdown(*paragraphs: str) -> tuple[str, str]:
    return "markdown", "\n\n".join(dedent(paragraph).strip("\n") for paragraph in paragraphs)


def heading(title: str, *paragraphs: str) -> tuple[str, str]:
    return markdown(f"## {title}", *paragraphs)


def model_cells(title: str, models: list[str]) -> list[tuple[str, str]]:
    cells = [heading(title, " ".join(MODEL_STORY[model] for model in models))]
    for model in models:
        cells.append(code(f'''
            print(get_model_spec("{model}").description)
            runs["{model}"] = train_once("{model}", cache)
            runs["{model}"].evaluate()
            '''))
        cells.append(code(f'runs["{model}"].plot_curves()'))
    return cells


def cells() -> list[tuple[str, str]]:
    """The notebook's cells in order: (kind, source)."""
    found = [
        markdown(
            "# A guided tour: Strika's CNN tutorial in cnnlab",
            "L. Strika's 2019 tutorial *Convolutional Neural Networks: a Python tutorial using TensorFlow and "
            "Keras* classifies Kaggle's Dogs vs. Cats photos. This notebook follows its sections in order, as "
            "[tutorial.md](tutorial.md) does with `cnnlab` commands, here with cnnlab's Python API: every step is "
            "a call you can change and rerun.",
            "*Generated by `python docs/make_notebook.py`; do not edit by hand. The settings below come from "
            "environment variables: by default the full tour (the tutorial's 2,048 training and 512 validation "
            "photos per class, every recipe's epochs: hours on a CPU; a finished run is reused when you rerun "
            "the notebook), or with `CNNLAB_TOUR_QUICK=1` a smoke test on a few photos that proves the steps run, "
            "not what they measure.*"),
        code(SETTINGS),
        heading("What a convolution is",
                "A convolutional layer slides a small kernel over the picture; at each position it multiplies the "
                "pixels under the kernel by the kernel's weights and adds them up (strictly a cross-correlation: "
                "Keras does not flip the kernel). Here a 6x6 picture, bright on the left, meets the tutorial's "
                "vertical-edge kernel. The result is large where the picture changes from bright to dark going "
                "right, and 0 where it is flat or changes only vertically; a 3x3 kernel without padding loses a "
                "border pixel on each side."),
        code(CONVOLUTION),
        heading("Edge filters on a real photo",
                "The tutorial applies a vertical and a horizontal edge filter to a photo of kittens. "
                "`cnnlab.explain.filters` does the same on any photo (here the first cat of the photos), with the "
                "same NumPy cross-correlation, and draws the responses beside the photo:"),
        code(FILTERS),
        heading("Loading the photos and the shape survey",
                "The tutorial opens every photo with PIL and counts the shapes: most are about 500x375, so it "
                "resizes all of them to 94 wide by 125 tall. The survey reads only the headers:"),
        code(SURVEY),
        heading("Preparing the data",
                "The tutorial keeps the first 2,048 cats and dogs for training and the last 512 of each for "
                "validation, labels cat = 1, and feeds raw 0-255 pixels. `cnnlab.prepare` decodes each photo once "
                "into a memory-mapped cache with that split (`split=\"tutorial\"`, counts per class) and test photos "
                "from the ids in between; a second call decodes only what changed:"),
        code(PREPARE),
        markdown("Every tutorial model below is trained by `cnnlab.train` with its own registered recipe "
                 "(loss, optimizer, learning rate, batch size, epochs), then `evaluate()` scores its best weights "
                 "on validation and test: the table shows accuracy at the threshold chosen on validation."),
        code('''
            from cnnlab.models import get_model_spec

            runs = {}  # model name -> cnnlab.TrainedRun
            '''),
    ]
    for title, models in TUTORIAL_STEPS.items():
        found += model_cells(title, models)
    found += [
        heading("The metrics",
                "The tutorial scores each model by the mean squared error and the Pearson correlation between "
                "P(cat) and the label, and by the best accuracy over thresholds 0.1 to 0.9. That threshold is "
                "picked on the very photos it is scored on, so it flatters the model: on test photos the model "
                "never saw, the same threshold does worse. cnnlab chooses the threshold on validation and reports "
                "it applied unchanged to test. From the stored predictions of the best tutorial network:"),
        code(METRICS),
        heading("Conclusion",
                "All of the tutorial's models side by side, the figures it published in parentheses "
                "(`cnnlab.compare` reads the saved evaluations only):"),
        code(CONCLUSION),
        heading("The modern recipe beside it",
                "What has changed since 2019: batch normalisation, residual blocks and global average pooling "
                "instead of a huge dense layer; pixels scaled to 0-1; AdamW with warm-up and a cosine schedule; "
                "augmentation, label smoothing and test-time flips. A modern model on the same photos:"),
        code(MODERN_TRAIN),
        code("modern.plot_curves()"),
        code("Markdown(cnnlab.compare([*runs.values(), modern]).text)"),
        markdown("The validation photos the modern model was surest about and got wrong, highest loss first "
                 "(as the model saw them):"),
        code('''
            mistakes = modern.top_losses()
            display(mistakes)
            mistakes.figure
            '''),
        heading(OWN_PHOTOS,
                "A trained run labels new photos: file paths, folders, globs, PIL images or arrays, one "
                "`Prediction` each (a photo that cannot be read gets its reason, not a label):"),
        code(OWN_PHOTOS_CODE),
        markdown(
            "To train on your own photos, put them in one folder per class (`photos/cats/`, `photos/dogs/`, ...) "
            "or name them `CLASS.N.jpg`, and give the folder to `cnnlab.train`: it prepares a cache at the "
            "recipe's size (under `~/.cache/cnnlab`, never inside your folder), splits it, trains and returns "
            "the run:",
            '''
            ```python
            run = cnnlab.train("resnet9-tiny", data="photos/", out="runs/mine", epochs=10)
            run.evaluate()                      # metrics per split
            run.plot_curves(); run.top_losses()
            run.predict(["new/photo.jpg"])
            run.export("model.onnx")            # checked against the run on real photos
            run.report("report.html")           # learning curves, ROC, confusion, mistakes
            ```
            ''',
            "`cnnlab.open_run(\"runs/mine\")` opens it again later with the same verbs; `cnnlab.load(\"runs/mine\")` "
            "gives just the classifier."),
        heading(SECTIONS[-1],
                '''
                ```sh
                python docs/make_notebook.py   # rewrites this notebook (cleared); tests check it is up to date
                CNNLAB_TOUR_QUICK=1 CNNLAB_TOUR_WORK=/tmp/tour jupyter execute docs/tour.ipynb   # the smoke test
                ```
                ''',
                "`tests/test_notebook.py` runs it in a real kernel on a few photos, as CI does."),
    ]
    return found


def notebook():
    """The cleared notebook; cell ids are numbered, so writing it twice gives the same bytes."""
    import nbformat

    made = nbformat.v4.new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
        "language_info": {"name": "python"},
    })
    for index, (kind, source) in enumerate(cells(), start=1):
        new = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        made.cells.append(new(source, id=f"tour-{index:02d}"))
    headings = [cell.source.splitlines()[0][3:] for cell in made.cells
                if cell.cell_type == "markdown" and cell.source.startswith("## ")]
    if headings != list(NOTEBOOK_SECTIONS):
        raise SystemExit(f"make_notebook: sections {headings} are not {list(NOTEBOOK_SECTIONS)}")
    nbformat.validate(made)
    return made


def text() -> str:
    import nbformat

    return nbformat.writes(notebook()) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(NOTEBOOK), help="where the notebook goes (default: docs/tour.ipynb)")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    arguments = parser.parse_args(argv)
    out, wanted = Path(arguments.out), text()
    if arguments.check:
        if not out.is_file() or out.read_text() != wanted:
            print(f"{out} is not what docs/make_notebook.py writes; run `python docs/make_notebook.py`",
                  file=sys.stderr)
            return 1
        return 0
    out.write_text(wanted)
    print(f"{out}: {len(notebook().cells)} cells")
    return 0


if __name__ == "__main__":
    sys.exit(main())
