"""`cnnlab reproduce`: the tutorial end to end, resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnlab.cli.common import DATA_ENVIRONMENT, data_argument


def command_reproduce(arguments) -> int:
    from cnnlab.experiments.reproduce import (BASELINE_NAMES, TUTORIAL_MODELS, ReproduceConfig, default_modern_models,
                                            reproduce)

    def names(text, default):
        return tuple(part for part in text.split(",") if part) if text is not None else default

    config = ReproduceConfig(
        data=photos(arguments), out=arguments.out, quick=arguments.quick,
        models=names(arguments.models, TUTORIAL_MODELS), baselines=names(arguments.baselines, BASELINE_NAMES),
        train_per_class=arguments.train, val_per_class=arguments.val, test_per_class=arguments.test,
        max_epochs=arguments.max_epochs, seed=arguments.seed, workers=arguments.workers,
        modern=names(arguments.modern, default_modern_models()), seeds=arguments.seeds,
    )
    reproduce(config)
    print((Path(arguments.out) / "results.md").read_text())
    return 0


def photos(arguments) -> str:
    """DATA, or with --download-to and no DATA anywhere, the public archive fetched there."""
    import os

    if arguments.data or os.environ.get(DATA_ENVIRONMENT) or not arguments.download_to:
        return data_argument(arguments.data)
    from cnnlab.data.download import DEFAULT_URL, DownloadOptions, download
    from cnnlab.errors import UserError

    try:
        result = download(DownloadOptions(dest=Path(arguments.download_to), url=arguments.url or DEFAULT_URL))
    except UserError as error:
        raise UserError(f"no photos here and none could be fetched ({error}); pass the photos you have: "
                        "make run DATA=/path/to/photos, or cnnlab reproduce /path/to/photos") from None
    print(result.summary())
    return str(result.data_folder())


def register(commands) -> None:
    reproduce = commands.add_parser(
        "reproduce", help="the tutorial end to end: survey, prepare, train all its models, baselines, results table",
        description="Run Strika's 2019 tutorial end to end and write results.md / results.json beside the published "
                    "figures. Resumable: run the same command again to continue a cut run. The full run takes under an "
                    "hour on 2 CPU cores (53 min measured, the tutorial's five models 39 of them); --quick takes a few "
                    "minutes.")
    reproduce.add_argument("data", nargs="?", metavar="DATA", help=f"folder of photos (default: ${DATA_ENVIRONMENT})")
    reproduce.add_argument("--data", dest="data_option", metavar="DATA", help="the folder of photos, same as DATA")
    reproduce.add_argument("--download-to", metavar="DIR",
                           help="when no DATA is given: fetch the public Dogs vs. Cats archive (PetImages) into DIR "
                           "with `cnnlab download` (progress, resume, checksum, safe extraction) and reproduce on it")
    reproduce.add_argument("--url", metavar="URL", help="with --download-to: the archive to fetch "
                           "(default: Microsoft's PetImages zip)")
    reproduce.add_argument("--out", default="runs/reproduce", help="output folder (default: runs/reproduce)")
    reproduce.add_argument("--quick", action="store_true", help="512 train / 128 val / 128 test photos per class, <= 3 epochs")
    reproduce.add_argument("--models", help="comma-separated subset of the tutorial models (default: all five)")
    reproduce.add_argument("--modern", help="comma-separated modern models trained beside them on the same photos "
                           "(default: resnet9, and efficientnet-lite0-linear where the [pretrained] extra is installed; '' for none; "
                           "see `cnnlab models`)")
    reproduce.add_argument("--baselines", help="comma-separated baselines: majority,pixel-trees ('' for none)")
    reproduce.add_argument("--train", type=int, help="training photos per class (default 2048; quick 512)")
    reproduce.add_argument("--val", type=int, help="validation photos per class (default 512; quick 128)")
    reproduce.add_argument("--test", type=int, help="test photos per class (default 400; quick 128)")
    reproduce.add_argument("--epochs", dest="max_epochs", type=int, metavar="N", help="cap every recipe's epochs (quick: 3)")
    reproduce.add_argument("--max-epochs", dest="max_epochs", type=int, help=argparse.SUPPRESS)  # the old name
    reproduce.add_argument("--seed", type=int, default=0, help="seed for weights and batch order")
    reproduce.add_argument("--seeds", type=int, default=1, metavar="N",
                           help="train every model with seeds SEED..SEED+N-1 and add each metric's mean and spread, "
                           "and whether the tutorial's figure is within seed noise, to results.md/json (N times "
                           "the training time; runs of earlier seeds are reused)")
    reproduce.add_argument("--workers", type=int, default=0, help="decoding processes (default: one per core)")
    reproduce.set_defaults(handler=command_reproduce)
