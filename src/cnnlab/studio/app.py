"""`cnnlab studio`'s HTTP API and page (FastAPI). Every answer is JSON, an error {"error": ...}
with a 4xx status: 400 for a bad value, 404 for a run or photo that is not there, 409 for a run
that is not ready for what was asked (no weights, not evaluated), 413/503 for the upload and
decode memory limits (serve's), never a 500 for the user's input.

    GET  /, /studio.js          the page (self-contained: no CDN, no request leaves the machine)
    GET  /api/info              folders, models, limits, the explorer's kernels
    GET  /api/data/survey       classes and counts, shape histogram, sample photos, skipped files
    GET  /api/data/split        how a stratified split (?val=&test=&seed=) divides each class
    GET  /api/data/thumbnail    ?path= a photo of --data, small, as JPEG
    POST /api/data/convolve     {"path", "kernel": 3x3}: the convolution explorer
    GET  /api/events            server-sent events: the jobs and (?run=) a run's curve, as they change
    (runs, training, comparing, inspecting and using a run: cnnlab.studio.routes)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from cnnlab.errors import UserError
from cnnlab.studio import data_view, run_views
from cnnlab.studio.config import StudioConfig
from cnnlab.studio.folders import Folders, NotFound
from cnnlab.studio.inspect_view import NotEvaluated

PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; img-src 'self' data: blob:; "
               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
EVENT_INTERVAL_S = 0.5
HEARTBEAT_S = 15.0
JOB_RUNS_STREAMED = 5  # the curves of the runs of this many latest jobs go with every event  # a comment line now and then, so proxies and browsers keep the stream open


class ConvolveRequest(BaseModel):
    path: str
    kernel: list[list[float]]


class Studio:
    """What the routes share: the folders, the job queue, the loaded models, the decode budget."""

    def __init__(self, config: StudioConfig, jobs=None):
        from cnnlab.serve.limits import DecodeBudget
        from cnnlab.serve.service import PredictionService
        from cnnlab.studio.jobs import JobQueue
        from cnnlab.studio.run_models import RunModels

        self.config = config
        self.folders = Folders(config.runs, config.data)
        self.budget = DecodeBudget(config.decode_memory_bytes)
        self.decoding = PredictionService(None, self.budget)  # its decode-memory reservation only
        self.models = RunModels(self.budget)
        self.jobs = jobs if jobs is not None else JobQueue()
        self.stopping = False

    def run_folder(self, name: str):
        return self.folders.run(name)


def status_of(error: Exception) -> int:
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, NotEvaluated):
        return 409
    return 400


def create_app(studio: Studio) -> FastAPI:
    from cnnlab.studio.routes import add_run_routes
    from cnnlab.version import __version__

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        studio.stopping = True  # the event streams end, so the server can stop

    app = FastAPI(title="cnnlab studio", version=__version__, docs_url=None, redoc_url=None,
                  description=__doc__.split("\n\n")[0], lifespan=lifespan)
    package = resources.files("cnnlab.studio")
    page = package.joinpath("page.html").read_text(encoding="utf-8")
    script = package.joinpath("studio.js").read_text(encoding="utf-8")
    headers = {"Content-Security-Policy": PAGE_POLICY, "X-Content-Type-Options": "nosniff",
               "Cache-Control": "no-store"}

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(UserError)
    async def user_error(request, error: UserError):
        return JSONResponse({"error": str(error)}, status_code=status_of(error))

    @app.exception_handler(data_view.BudgetRefusal)
    async def budget_refusal(request, error: data_view.BudgetRefusal):
        return JSONResponse({"error": str(error)}, status_code=error.status,
                            headers={"Retry-After": "1"} if error.status == 503 else None)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(part) for part in problem['loc'][1:])}: {problem['msg']}"
                             for problem in error.errors())
        return JSONResponse({"error": problems[:500] or "invalid request"}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page, headers=headers)

    @app.get("/studio.js", include_in_schema=False)
    async def studio_script():
        return Response(script, media_type="text/javascript", headers=headers)

    @app.get("/api/info", summary="the studio's folders, the models it can train, its limits")
    async def info():
        from cnnlab.explain.kernels import KERNELS
        from cnnlab.models import describe_models

        models = [{key: record[key] for key in ("name", "description", "family", "parameters", "input_shape",
                                                "recipe")} for record in describe_models()]
        return {"version": __version__, "data": str(studio.config.data) if studio.config.data else None,
                "runs": str(studio.config.runs), "models": models, "imagenet_weights": imagenet_weights_installed(),
                "kernels": {name: kernel.matrix.tolist() for name, kernel in KERNELS.items()
                            if kernel.matrix.shape == (3, 3)},
                "limits": {"max_upload_mb": studio.config.max_upload_mb, "max_photos": studio.config.max_photos,
                           "decode_memory_mb": round(studio.budget.capacity / 2**20)}}

    @app.get("/api/data/survey", summary="what is in --data: classes, shapes, samples, skipped files")
    async def survey():
        return await run_in_threadpool(data_view.survey_data, studio.folders)

    @app.get("/api/data/split", summary="how a stratified split divides each class")
    async def split(val: float | None = None, test: float | None = None, seed: int | None = None):
        return await run_in_threadpool(data_view.split_counts, studio.folders, _count(val), _count(test), seed)

    @app.get("/api/data/thumbnail", summary="a photo of --data as a small JPEG")
    async def thumbnail(path: str):
        data = await run_in_threadpool(data_view.thumbnail, studio.folders, path, studio.decoding)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.post("/api/data/convolve", summary="the convolution explorer: a photo through a 3x3 kernel")
    async def convolve(body: ConvolveRequest):
        from cnnlab.studio.inspect_view import convolve as apply_kernel

        return await run_in_threadpool(apply_kernel, studio.folders, studio.decoding, body.path, body.kernel)

    @app.get("/api/events", summary="server-sent events: the jobs, and ?run='s learning curve, as they change")
    async def events(request: Request, run: str | None = None):
        run = run or None
        if run is not None:
            studio.folders.run_path(run)  # a bad name is refused now, not inside the stream
        return StreamingResponse(event_stream(studio, request, run), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    add_run_routes(app, studio)
    return app


def _count(value: float | None):
    """A whole number stays a count (500 photos), anything else a fraction (0.1 of each class)."""
    return int(value) if value is not None and value >= 1 and float(value).is_integer() else value


def event_snapshot(studio: Studio, run: str | None) -> dict:
    """The queue, the curves of the runs of its latest jobs (what a page is watching train),
    and ?run='s curve when asked for."""
    def detail(name: str) -> dict:
        try:
            return run_views.run_detail(studio.folders, name)
        except UserError as error:  # not trained yet (queued) or damaged: say so in the stream
            return {"name": name, "error": str(error), "history": []}

    jobs = studio.jobs.snapshot()
    watched = list(dict.fromkeys(job["run"] for job in jobs))[:JOB_RUNS_STREAMED]
    return {"jobs": jobs, "runs": {name: detail(name) for name in watched},
            "run": detail(run) if run is not None else None}


async def event_stream(studio: Studio, request: Request, run: str | None):
    """One `data:` event whenever the snapshot changes, read from the queue and the run folder
    (Run.history); the first at once, so a page that reconnects is up to date immediately."""
    last, quiet = None, 0.0
    while not studio.stopping and not await request.is_disconnected():
        text = json.dumps(await run_in_threadpool(event_snapshot, studio, run), default=str)
        if text != last:
            last, quiet = text, 0.0
            yield f"data: {text}\n\n"
        elif quiet >= HEARTBEAT_S:
            quiet = 0.0
            yield ": still here\n\n"
        await asyncio.sleep(EVENT_INTERVAL_S)
        quiet += EVENT_INTERVAL_S


def imagenet_weights_installed() -> bool:
    """Whether Keras' cache holds MobileNetV3Small's ImageNet weights (the pretrained model
    then trains offline; without them `imagenet` would need a download)."""
    import os
    from pathlib import Path

    folder = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    return folder.is_dir() and any("mobilenet_v3_small" in entry.name.lower() for entry in folder.iterdir())
