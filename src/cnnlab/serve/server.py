"""Starting `cnnlab serve`: load the run once, build the app, run uvicorn until interrupted.

`build_app` is what the tests and the benchmark start in a uvicorn of their own (on a socket
they bound to a free port); `serve` is the command's blocking call.
"""

from __future__ import annotations

import sys

from cnnlab.serve.config import ServeConfig

# uvicorn answers 503 past this many connections and requests at once, so a flood queues
# nothing unbounded; the model answers one batch at a time anyway.
MAX_CONCURRENCY = 64
KEEP_ALIVE_S = 5


def build_app(config: ServeConfig):
    """(ASGI app with the upload cap outermost, the PredictionService behind it)."""
    from cnnlab.inference.classifier import load
    from cnnlab.serve.app import create_app
    from cnnlab.serve.limits import UploadLimit
    from cnnlab.serve.service import PredictionService

    service = PredictionService(load(config.run, threshold=config.threshold, engine=config.engine))
    return UploadLimit(create_app(service, config), config.max_upload_bytes), service


def uvicorn_config(app, config: ServeConfig, **overrides):
    import uvicorn

    settings = dict(host=config.host, port=config.port, log_level="info", server_header=False,
                    limit_concurrency=MAX_CONCURRENCY, timeout_keep_alive=KEEP_ALIVE_S)
    settings.update(overrides)
    return uvicorn.Config(app, **settings)


def serve(config: ServeConfig) -> None:
    import uvicorn

    app, service = build_app(config)
    for note in service.classifier.notes:
        print(f"cnnlab serve: note: {note}", file=sys.stderr)
    host = f"[{config.host}]" if ":" in config.host else config.host
    print(f"cnnlab serve: {service.classifier.run} on http://{host}:{config.port}/ "
          "(page /, POST /predict, POST /explain, GET /health, GET /openapi.json); Ctrl+C stops", file=sys.stderr)
    uvicorn.Server(uvicorn_config(app, config)).run()
