"""`cnnlab export`: a trained run as an ONNX, .keras or SavedModel file carrying its preprocessing.

The same rules as every cnnlab.cli module: heavy imports inside the
handler, user errors as UserError (one line, exit status 2), a failed parity check included.
"""

from __future__ import annotations

# The same values as cnnlab.inference.export's (tests/test_export.py checks), written out here so
# that building the parser (`cnnlab --help`) imports neither NumPy nor Pillow.
FORMATS = ("onnx", "keras", "savedmodel")
DEFAULT_PARITY_PHOTOS = 16
DEFAULT_TOLERANCE = 1e-4
EXIT_STATUS = ("exit status: 0 when the export was written and matched the run's model; 2 when it could not be "
               "made or did not match (one line says why; nothing is left at PATH), or for a usage error.")


def command_export(arguments) -> int:
    from cnnlab.inference.export import ExportConfig, export_run
    from cnnlab.runs import Run

    config = ExportConfig(run=arguments.run, format=arguments.format, out=arguments.out,
                          photos=tuple(arguments.photos or ()), parity_photos=arguments.parity_photos,
                          tolerance=arguments.tolerance)
    Run.open(config.run)  # before Keras is imported: a wrong RUN fails at once
    print(export_run(config).summary())
    return 0


def register(commands) -> None:
    """Add `export` to the CLI's subcommands."""
    export = commands.add_parser(
        "export", help="write a trained run as an ONNX, .keras or SavedModel file with its preprocessing",
        description="Export RUN's best weights as a standalone model: onnx (ONNX Runtime and others; needs the "
                    "onnx package), keras (a .keras file for keras.saving.load_model) or savedmodel (a TensorFlow "
                    "SavedModel folder; needs the tensorflow extra: make setup-tensorflow). The input is float32 "
                    "batch x 3 x height x width (channels_first), scaled as the run's recipe says; the output is "
                    "P(class 1) for two classes, else one probability per class. The preprocessing (size, fit, "
                    "pixel scale, test-time flip), class names and the validation threshold are stored inside "
                    "(ONNX metadata_props, cnnlab.json in the .keras zip, assets/cnnlab.json) and in PATH.json "
                    "beside it. Before PATH is written, the export is reloaded and run on real photos beside the "
                    "run's model: the probabilities must agree within --tolerance and every label must match.",
        epilog=EXIT_STATUS)
    export.add_argument("run", metavar="RUN", help="run folder written by `cnnlab train`")
    export.add_argument("--format", choices=FORMATS, required=True, help="onnx, keras or savedmodel")
    export.add_argument("--out", required=True, metavar="PATH",
                        help="file to write (a folder for savedmodel; keras needs a .keras name)")
    export.add_argument("--photos", nargs="+", metavar="PHOTO",
                        help="photos, folders or globs for the parity check (default: photos listed in the run's "
                             "cache, validation split first)")
    export.add_argument("--parity-photos", type=int, default=DEFAULT_PARITY_PHOTOS, metavar="N",
                        help=f"how many photos the parity check uses (default: {DEFAULT_PARITY_PHOTOS})")
    export.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="T",
                        help=f"largest probability difference allowed (default: {DEFAULT_TOLERANCE:g})")
    export.set_defaults(handler=command_export)
