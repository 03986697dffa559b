"""Starting `cnnlab studio`: build the app, run uvicorn until interrupted, stop the worker.

`build_app` is what the tests start in a uvicorn of their own; `studio` is the command's
blocking call. The guard (token, Host, cross-site writes) is outermost, then serve's upload
cap, so nothing is read from a request the studio will not answer.
"""

from __future__ import annotations

import sys

from cnnlab.studio.config import StudioConfig

MAX_CONCURRENCY = 64  # serve's: uvicorn answers 503 past this many connections at once
KEEP_ALIVE_S = 5
SHUTDOWN_GRACE_S = 3  # the event streams never end by themselves


def build_app(config: StudioConfig, jobs=None):
    """(ASGI app with the guard and the upload cap outermost, the Studio behind it)."""
    from cnnlab.serve.limits import UploadLimit
    from cnnlab.studio.app import Studio, create_app
    from cnnlab.studio.guard import Guard

    studio = Studio(config, jobs)
    app = create_app(studio)
    return Guard(UploadLimit(app, config.max_upload_bytes), config.token, config.loopback_only), studio


def uvicorn_config(app, config: StudioConfig, **overrides):
    import uvicorn

    settings = dict(host=config.host, port=config.port, log_level="warning", server_header=False,
                    limit_concurrency=MAX_CONCURRENCY, timeout_keep_alive=KEEP_ALIVE_S,
                    timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    settings.update(overrides)
    return uvicorn.Config(app, **settings)


def address(config: StudioConfig) -> str:
    host = f"[{config.host}]" if ":" in config.host else config.host
    return f"http://{host}:{config.port}/"


def studio(config: StudioConfig) -> None:
    import uvicorn

    app, state = build_app(config)
    token = f"?token={config.token}" if config.token else ""
    print(f"cnnlab studio: open {address(config)}{token} (photos: {config.data or 'none, pass --data'}; "
          f"runs: {config.runs}); Ctrl+C stops", file=sys.stderr)
    try:
        uvicorn.Server(uvicorn_config(app, config)).run()
    finally:
        state.stopping = True
        state.jobs.close()  # a running job is terminated; its run resumes from its last finished epoch
