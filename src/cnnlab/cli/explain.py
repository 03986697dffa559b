"""The picture-making subcommands, `cnnlab filters` and `cnnlab explain`: handlers and parsers.

Kept beside cli.py (which calls `register`) so that the main command module stays small; the
same rules apply: heavy imports inside the handlers, user errors as UserError (one line).
"""

from __future__ import annotations

import sys

from cnnlab.errors import EXIT_SOME_INPUTS_FAILED


def command_filters(arguments) -> int:
    from cnnlab.data.decode import parse_size
    from cnnlab.explain.filters import FiltersConfig, explore_filters

    config = FiltersConfig(
        image=arguments.image, out=arguments.out, kernels=tuple(arguments.kernel or ()), stride=arguments.stride,
        padding=arguments.padding, colour=arguments.colour, size=parse_size(arguments.size) if arguments.size else None,
    )
    for path in explore_filters(config):
        print(path)
    return 0


def command_explain(arguments) -> int:
    from cnnlab.explain.introspect import ExplainConfig, explain_run

    config = ExplainConfig(run=arguments.run, images=tuple(arguments.images), out=arguments.out,
                           layer=arguments.layer, channels=arguments.channels)
    result = explain_run(config)
    for path in result.written:
        print(path)
    for note in result.notes:
        print(f"cnnlab explain: note: {note}", file=sys.stderr)
    # Usable photos were explained; each unusable one is named on its own line, and the status says so.
    for item in result.skipped:
        print(f"cnnlab explain: error: {item['path']}: {item['reason']} (skipped)", file=sys.stderr)
    return EXIT_SOME_INPUTS_FAILED if result.skipped else 0


def register(commands) -> None:
    """Add `filters` and `explain` to the CLI's subcommands."""
    filters = commands.add_parser(
        "filters", help="apply edge, blur and custom convolution kernels to a photo and show the results side by side",
        description="Cross-correlate IMAGE (greyscale by default) with each kernel in NumPy, as a Keras Conv2D layer "
                    "does, and write DIR/filters.png (original | each result, its kernel printed under it), one PNG "
                    "per kernel and DIR/filters.json (kernels, output shapes, value ranges). Edge detectors are shown "
                    "as absolute response (edge strength); blurs, sharpen and emboss as pictures.")
    filters.add_argument("image", help="the photo to filter")
    filters.add_argument("--kernel", action="append", metavar="NAME|MATRIX",
                         help="repeatable: a built-in name (vertical-edge, horizontal-edge, sobel-x, sobel-y, laplacian, "
                              "box-blur, gaussian-blur, gaussian-blur-5x5, sharpen, emboss), a matrix such as "
                              "'1,0,-1;2,0,-2;1,0,-1' (write --kernel=-1,... when it starts with a minus), or a "
                              ".json/.npy file (default: the tutorial's vertical and horizontal edge filters)")
    filters.add_argument("--stride", type=int, default=1, help="step between kernel positions (default: 1)")
    filters.add_argument("--padding", choices=("valid", "same"), default="valid",
                         help="valid: no padding, the output shrinks; same: zero padding keeps ceil(size / stride)")
    channels = filters.add_mutually_exclusive_group()
    channels.add_argument("--grey", dest="colour", action="store_false", help="filter the luminance (default)")
    channels.add_argument("--colour", dest="colour", action="store_true", help="filter each RGB channel")
    filters.add_argument("--size", help="WIDTHxHEIGHT to resize the photo to first (default: its own size)")
    filters.add_argument("--out", required=True, metavar="DIR", help="folder to write the figure, PNGs and JSON into")
    filters.set_defaults(handler=command_filters, colour=False)

    explain = commands.add_parser(
        "explain", help="a trained run's learned kernels, feature maps and Grad-CAM saliency for some photos",
        description="Load RUN's best weights into its registered architecture, decode each IMAGE as the run's data "
                    "was (size, fit, pixel scale) and write into DIR: kernels.png (the first convolution's kernels), "
                    "<photo>-features.png (each convolution's first feature maps), <photo>-gradcam.png (what drove "
                    "the prediction, with the predicted class and probability) and explain.json. Models without "
                    "convolutions get their predictions only.")
    explain.add_argument("run", metavar="RUN", help="run folder written by `cnnlab train`")
    explain.add_argument("images", nargs="+", metavar="IMAGE", help="photos to explain")
    explain.add_argument("--out", required=True, metavar="DIR", help="folder to write the figures and explain.json into")
    explain.add_argument("--layer", metavar="NAME",
                         help="layer for Grad-CAM (default: the last convolution); any layer with feature maps")
    explain.add_argument("--channels", type=int, default=16, metavar="N",
                         help="feature maps shown per layer (default: 16)")
    explain.set_defaults(handler=command_explain)
