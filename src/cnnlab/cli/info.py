"""`cnnlab info` and `cnnlab models`: what is installed and which models are registered."""

from __future__ import annotations

import json

from cnnlab.cli.common import add_format


def command_info(arguments) -> int:
    from cnnlab.info import runtime_info

    info = runtime_info(load_backend=not arguments.no_backend)
    print(json.dumps(info, indent=2) if arguments.format == "json" else "\n".join(f"{key}: {value}" for key, value in info.items()))
    return 0


def command_models(arguments) -> int:
    from cnnlab.models import describe_models

    models = describe_models()
    if arguments.format == "json":
        print(json.dumps(models, indent=2))
        return 0
    print(f"{'name':14} {'family':9} {'parameters':>12} {'MFLOPs/img':>10}  recipe / description")
    for model in models:
        recipe = model["recipe"]
        gradient = (f"{recipe['loss']}, {recipe['optimizer']} lr {recipe['learning_rate']:g}, batch {recipe['batch_size']}, "
                    f"{recipe['epochs']} epochs")
        if recipe.get("head_fit") == "logistic" and not recipe.get("cache_frozen_layers"):
            # A frozen backbone's head: no optimizer, learning rate or epochs are used.
            fitted = f"logistic regression on frozen features, {recipe['input_width']}x{recipe['input_height']}"
        elif recipe.get("head_fit") == "logistic":  # the registered fine-tuned models: probe, then fine-tune
            fitted = f"logistic-regression head, then {gradient} above the frozen layers"
        else:
            fitted = gradient
        print(f"{model['name']:14} {model['family']:9} {model['parameters']:>12,} {model['forward_flops'] / 1e6:>10.1f}  "
              f"{fitted}, pixels {recipe['pixel_scale']} - {model['description']}")
    return 0


def register(commands) -> None:
    info = commands.add_parser("info", help="versions, backend, threads and allocator in use")
    add_format(info)
    info.add_argument("--no-backend", action="store_true", help="do not import Keras (fast)")
    info.set_defaults(handler=command_info)

    models = commands.add_parser("models", help="list registered models with parameters, FLOPs and recipes")
    add_format(models)
    models.set_defaults(handler=command_models)
