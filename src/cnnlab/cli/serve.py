"""`cnnlab serve`: a trained run behind an HTTP API (POST /predict, /explain, GET /health) and a page.

The same rules as every cnnlab.cli module: heavy imports (FastAPI,
uvicorn, Keras) inside the handler, user errors as UserError (one line, exit status 2).
"""

from __future__ import annotations

import sys

from cnnlab.serve.config import (DEFAULT_HOST, DEFAULT_MAX_PHOTOS, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT, ENGINES,
                                 ServeConfig)


def command_serve(arguments) -> int:
    from cnnlab.runs import Run

    config = ServeConfig(run=arguments.run, host=arguments.host, port=arguments.port,
                         max_upload_mb=arguments.max_upload_mb, max_photos=arguments.max_photos,
                         threshold=arguments.threshold, decode_memory_mb=arguments.decode_memory_mb,
                         engine=arguments.engine)
    Run.open(config.run)  # before Keras is imported: a wrong RUN fails at once
    from cnnlab.serve.server import serve

    if not config.loopback_only:
        print(f"cnnlab serve: note: listening on {config.host}: other machines can reach this server; "
              "it has no authentication", file=sys.stderr)
    serve(config)
    return 0


def register(commands) -> None:
    """Add `serve` to the CLI's subcommands."""
    serve = commands.add_parser(
        "serve", help="serve a trained run over HTTP: a JSON API and a web page to drop photos on",
        description="Load RUN once and answer HTTP requests until interrupted (Ctrl+C). POST /predict takes "
                    "photos as multipart/form-data (one or more files) or one photo as the raw body and returns "
                    "JSON: per photo its filename, label, probability of each class, the threshold and any "
                    "error. POST /explain returns one photo's edge-filter views and Grad-CAM as PNG data URLs. "
                    "GET /health reports the run; GET /openapi.json is the schema; GET / is a web page (no "
                    "external requests) to drop photos on. Photos are decoded and scaled as the run's training "
                    "data, exactly as `cnnlab predict` does. Refused cleanly, as JSON: bodies over "
                    "--max-upload-mb (413), bytes that are no image (415), broken, truncated or "
                    "decompression-bomb images (400).",
        epilog="Binds to 127.0.0.1 (this machine only) unless --host says otherwise; there is no authentication.")
    serve.add_argument("run", metavar="RUN", help="run folder written by `cnnlab train`")
    serve.add_argument("--host", default=DEFAULT_HOST,
                       help=f"address to listen on (default: {DEFAULT_HOST}, this machine only; 0.0.0.0 = every "
                            "interface)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default: {DEFAULT_PORT})")
    serve.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
                       help=f"largest request body, all photos together (default: {DEFAULT_MAX_UPLOAD_MB:g} MB)")
    serve.add_argument("--max-photos", type=int, default=DEFAULT_MAX_PHOTOS, metavar="N",
                       help=f"most photos in one request (default: {DEFAULT_MAX_PHOTOS})")
    serve.add_argument("--decode-memory-mb", type=float, metavar="MB",
                       help="memory for photos being decoded at once; a request that would exceed it waits, then "
                            "gets 503 (413 if it can never fit) (default: a quarter of the process's memory limit, "
                            "at most 2,048 MB)")
    serve.add_argument("--threshold", type=float, metavar="T",
                       help="two-class runs: predict the second class when its probability > T "
                            "(default: the validation-chosen threshold)")
    serve.add_argument("--engine", choices=ENGINES, default="keras",
                       help="what runs the model: keras (the weights in Keras); onnx (the run's ONNX export in ONNX "
                            "Runtime, made on first use as `cnnlab predict` makes it: a server that starts without "
                            "Keras and holds less memory; /explain's Grad-CAM still builds the Keras model when "
                            "first asked); auto: onnx when the export exists or can be made (default: keras)")
    serve.set_defaults(handler=command_serve)
