"""`cnnlab studio`: the whole workflow in a local web app (data, train, compare, inspect, use).

The same rules as every cnnlab.cli module: heavy imports (FastAPI, uvicorn, Keras) inside the
handler, user errors as UserError (one line, exit status 2).
"""

from __future__ import annotations

from cnnlab.studio.config import (DEFAULT_HOST, DEFAULT_MAX_PHOTOS, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT,
                                  DEFAULT_RUNS, StudioConfig)


def command_studio(arguments) -> int:
    config = StudioConfig(data=arguments.data_option, runs=arguments.runs, host=arguments.host, port=arguments.port,
                          token=arguments.token, max_upload_mb=arguments.max_upload_mb,
                          max_photos=arguments.max_photos, decode_memory_mb=arguments.decode_memory_mb,
                          caches=arguments.caches)
    from cnnlab.studio.server import studio

    studio(config)
    return 0


def register(commands) -> None:
    """Add `studio` to the CLI's subcommands."""
    studio = commands.add_parser(
        "studio", help="the whole workflow in your browser: survey photos, train, compare, inspect, predict, export",
        description="A local web app over cnnlab: the Data tab surveys --data (classes, shapes, sample photos, "
                    "skipped files, the split); Train queues training of any registered model with recipe "
                    "overrides, one job at a time in a worker process, with live learning curves, stop and resume; "
                    "Compare shows runs under --runs side by side; Inspect shows a run's confusion matrix, a "
                    "threshold slider, its most confidently wrong photos with Grad-CAM, feature maps and a "
                    "convolution explorer; Use predicts dropped photos and exports ONNX or .keras files and the "
                    "HTML report. The page loads nothing from the internet. Photos are only read, never changed; "
                    "runs are addressed by their folder name under --runs, photos by their path under --data.",
        epilog="Listens on 127.0.0.1 (this machine only). Any other --host needs --token: every request must then "
               "carry it (open the page once as http://HOST:PORT/?token=SECRET; it is kept in a cookie).")
    studio.add_argument("--data", dest="data_option", metavar="PHOTOS",
                        help="folder of photos to survey and train on (class subfolders or Kaggle names)")
    studio.add_argument("--runs", default=DEFAULT_RUNS, metavar="DIR",
                        help="folder the runs are trained into and read from")
    studio.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default: {DEFAULT_HOST}, this machine only; others need --token)")
    studio.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port")
    studio.add_argument("--token", metavar="SECRET",
                        help="required on every request when given; required when --host is not a loopback address")
    studio.add_argument("--caches", metavar="DIR",
                        help="where prepared caches of --data go (default: $CNNLAB_CACHE_DIR or ~/.cache/cnnlab)")
    studio.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
                        help="largest request body, all photos together")
    studio.add_argument("--max-photos", type=int, default=DEFAULT_MAX_PHOTOS, metavar="N",
                        help="most photos in one prediction request")
    studio.add_argument("--decode-memory-mb", type=float, metavar="MB",
                        help="memory for photos being decoded at once (default: a quarter of the process's memory "
                             "limit, at most 2,048 MB)")
    studio.set_defaults(handler=command_studio)
