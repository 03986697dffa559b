"""The studio's run routes: training and its queue, comparing, inspecting and using a run.

    GET  /api/runs                      every run under --runs, newest first
    GET  /api/runs/{name}               one run: its recipe, state and learning curve
    POST /api/train                     queue training: {"model", "run"?, "epochs"?, "batch_size"?,
                                        "learning_rate"?, "width"?, "height"?, "val"?, "test"?, "seed"?,
                                        "patience"?, "init_weights"?}
    POST /api/runs/{name}/resume        queue the same run again (it continues from its last epoch)
    POST /api/runs/{name}/evaluate      queue its evaluation (stored validation predictions)
    GET  /api/jobs                      the queue; POST /api/jobs/{id}/stop stops one (terminates it)
    GET  /api/compare                   ?runs=a,b: `cnnlab compare`'s rows and every run's curves
    GET  /api/runs/{name}/confusion     ?threshold=: confusion matrix, accuracy, precision, recall
    GET  /api/runs/{name}/top-losses    the most confidently wrong validation photos
    GET  /api/runs/{name}/grad-cam      ?row=: a cache row's prediction and Grad-CAM
    GET  /api/runs/{name}/features      ?row=: feature maps per convolution
    POST /api/runs/{name}/predict       photos (multipart or raw body), as `cnnlab serve` takes them
    GET  /api/runs/{name}/export        ?format=onnx|keras: the exported model as a download
    GET  /api/runs/{name}/report        the run's HTML report
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from cnnlab.errors import UserError
from cnnlab.studio import inspect_view, run_views
from cnnlab.studio.folders import check_run_name

EXPORT_FORMATS = {"onnx": ".onnx", "keras": ".keras"}
# The report is a file of its own (inline styles, figures as data: URLs, no script).
REPORT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


class TrainRequest(BaseModel):
    model: str
    run: str | None = None  # the run folder's name under --runs; default <model>-<date>-<time>
    epochs: int | None = Field(None, ge=1, le=10_000)
    batch_size: int | None = Field(None, ge=1, le=65_536)
    learning_rate: float | None = Field(None, gt=0, le=10)
    width: int | None = Field(None, ge=8, le=1024)  # input size; both or neither
    height: int | None = Field(None, ge=8, le=1024)
    val: float | None = Field(None, gt=0)  # a fraction of each class (< 1) or a count of photos
    test: float | None = Field(None, ge=0)
    seed: int | None = Field(None, ge=0)
    patience: int | None = Field(None, ge=1)
    init_weights: str | None = None  # "imagenet" for a transfer model (needs its weights installed)


class ResumeRequest(BaseModel):
    epochs: int | None = Field(None, ge=1, le=10_000)


def train_settings(studio, request: TrainRequest) -> tuple[str, dict]:
    """(run name, the worker's settings), checked here so that a bad request fails at once."""
    from cnnlab.models import get_model_spec

    photos = studio.folders.require_data()
    spec = get_model_spec(request.model)  # UserError naming the known models
    name = check_run_name(request.run or f"{request.model}-{time.strftime('%Y%m%d-%H%M%S')}")
    out = studio.folders.run_path(name)
    if out.exists() and any(out.iterdir()):
        raise UserError(f"run {name!r} already exists under {studio.folders.runs}; resume it or choose another name")
    if (request.width is None) != (request.height is None):
        raise UserError("give both width and height for the input size, or neither (the recipe's)")
    if request.init_weights not in (None, "imagenet"):
        raise UserError("init_weights may only be 'imagenet' here (a pretrained backbone)")
    if request.init_weights and "transfer" not in spec.name:
        raise UserError(f"{request.model} has no pretrained backbone; choose a transfer model for ImageNet weights")
    settings = {"model": request.model, "out": str(out), "photos": str(photos), "caches": studio.config.caches,
                "size": (request.width, request.height) if request.width else None}
    for key in ("epochs", "batch_size", "learning_rate", "patience", "init_weights", "seed"):
        settings[key] = getattr(request, key)
    for key in ("val", "test"):
        value = getattr(request, key)
        settings[key] = int(value) if value is not None and value >= 1 and float(value).is_integer() else value
    return name, settings


def add_run_routes(app: FastAPI, studio) -> None:
    folders = studio.folders

    @app.get("/api/runs", summary="every run under --runs, newest first")
    async def runs():
        return {"runs": await run_in_threadpool(run_views.list_runs, folders)}

    @app.get("/api/runs/{name}", summary="one run: recipe, state, learning curve")
    async def run_detail(name: str):
        return await run_in_threadpool(run_views.run_detail, folders, name)

    @app.post("/api/train", status_code=202, summary="queue a training job (one runs at a time)")
    async def train(request: TrainRequest):
        name, settings = await run_in_threadpool(train_settings, studio, request)
        return studio.jobs.submit("train", name, settings).describe()

    @app.post("/api/runs/{name}/resume", status_code=202, summary="queue the run again: it continues")
    async def resume(name: str, request: ResumeRequest | None = None):
        run = folders.run(name)
        settings = {"model": run.model_name, "out": str(run.path), "resume": True, "caches": studio.config.caches,
                    "epochs": request.epochs if request else None}
        return studio.jobs.submit("train", name, settings).describe()

    @app.post("/api/runs/{name}/evaluate", status_code=202, summary="queue the run's evaluation")
    async def evaluate(name: str):
        run = folders.run(name)
        if not run.has_weights():
            raise UserError(f"run {name!r} has no trained weights yet")
        return studio.jobs.submit("evaluate", name, {"out": str(run.path), "caches": studio.config.caches}).describe()

    @app.get("/api/jobs", summary="the training queue, newest first")
    async def jobs():
        return {"jobs": studio.jobs.snapshot()}

    @app.get("/api/jobs/{number}/log", summary="the end of a job's log")
    async def job_log(number: int):
        return {"id": number, "log": studio.jobs.get(number).log_tail()}

    @app.post("/api/jobs/{number}/stop", summary="stop a job: drop it from the queue, or terminate its worker")
    async def stop(number: int):
        return studio.jobs.stop(number).describe()

    @app.get("/api/compare", summary="runs side by side: cnnlab compare's table and every run's curves")
    async def compare(runs: str = ""):
        names = [name for name in runs.split(",") if name]
        return await run_in_threadpool(run_views.compare_runs, folders, names)

    @app.get("/api/runs/{name}/confusion", summary="confusion matrix and metrics on validation at ?threshold=")
    async def confusion(name: str, threshold: float | None = None):
        return await run_in_threadpool(inspect_view.threshold_metrics, folders.run(name), threshold)

    @app.get("/api/runs/{name}/top-losses", summary="the most confidently wrong validation photos")
    async def top_losses(name: str, count: int = 12):
        count = max(1, min(count, 48))
        return {"rows": await run_in_threadpool(inspect_view.top_losses, folders.run(name), count)}

    @app.get("/api/runs/{name}/grad-cam", summary="a cache row's prediction and Grad-CAM")
    async def grad_cam(name: str, row: int):
        return await run_in_threadpool(inspect_view.grad_cam, studio.models, folders.run(name), row)

    @app.get("/api/runs/{name}/features", summary="feature maps per convolution for a cache row")
    async def features(name: str, row: int):
        return await run_in_threadpool(inspect_view.feature_maps, studio.models, folders.run(name), row)

    @app.post("/api/runs/{name}/predict", summary="label and class probabilities of uploaded photos")
    async def predict(name: str, request: Request):
        from cnnlab.serve.app import answer_headers, answer_status, failure_summary, read_uploads

        run = folders.run(name)
        uploads = await read_uploads(request, studio.config)
        service = await run_in_threadpool(studio.models.service, run)
        rows = await run_in_threadpool(service.predict, uploads)
        status = answer_status(rows)
        return JSONResponse({"results": rows, "error": failure_summary(rows)}, status_code=status,
                            headers=answer_headers(status))

    @app.get("/api/runs/{name}/export", summary="the run exported (?format=onnx or keras), as a download")
    async def export(name: str, format: str = "onnx"):
        if format not in EXPORT_FORMATS:
            raise UserError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {format[:20]!r}")
        run = folders.run(name)
        scratch = Path(tempfile.mkdtemp(prefix="cnnlab-studio-export-"))
        target = scratch / f"{name}{EXPORT_FORMATS[format]}"
        try:
            await run_in_threadpool(export_file, run.path, target, format)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return FileResponse(target, filename=target.name, media_type="application/octet-stream",
                            background=BackgroundTask(shutil.rmtree, scratch, ignore_errors=True))

    @app.get("/api/runs/{name}/report", summary="the run's HTML report (learning curves, ROC, confusion, mistakes)")
    async def report(name: str):
        run = folders.run(name)
        with tempfile.TemporaryDirectory(prefix="cnnlab-studio-report-") as scratch:
            path = await run_in_threadpool(report_file, run.path, Path(scratch) / "report.html")
            document = path.read_text(encoding="utf-8")
        safe = re.sub(r"[^A-Za-z0-9._-]", "-", name)
        return HTMLResponse(document, headers={"Content-Security-Policy": REPORT_POLICY,
                                               "Content-Disposition": f'inline; filename="{safe}-report.html"'})


def export_file(run_path: Path, target: Path, format: str) -> None:
    from cnnlab.workflow import open_run

    if not open_run(run_path).run.has_weights():
        raise UserError(f"run {run_path.name!r} has no trained weights to export yet")
    open_run(run_path).export(target, format=format)


def report_file(run_path: Path, target: Path) -> Path:
    from cnnlab.workflow import open_run

    return open_run(run_path).report(target)
