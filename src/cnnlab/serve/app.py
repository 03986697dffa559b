"""`cnnlab serve`'s HTTP API (FastAPI on Starlette): predict, explain, health, the page.

    GET  /              the web page (page.html: self-contained, no CDN, no external request)
    GET  /health        status and the run's classes, threshold and preprocessing
    POST /predict       photos as multipart/form-data (any file fields, several allowed) or one
                        photo as the raw request body (?filename= names it); one result each
    POST /explain       one photo: its prediction, edge-filter views and Grad-CAM as PNG data URLs
    GET  /openapi.json  the schema (the interactive /docs page is off: it loads from a CDN)

Hostile input gets a JSON {"error": ...} and a 4xx, never a 500: a body over the cap is refused
with 413 by `UploadLimit` before it is read into memory (by Content-Length when sent, else
while streaming); bytes in no image format -> 415; broken, truncated or decompression-bomb
images -> 400 (the decoder refuses bombs from their header, see cnnlab.data.decode). Decoding
is bounded by a memory budget (cnnlab.serve.limits.DecodeBudget): an image that could never fit
it -> 413; while it is full -> 503 with Retry-After. With several photos, those that fail get
their error in their own row and the answer is 200 when any photo was predicted.
"""

from __future__ import annotations

import json
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from cnnlab.data.decode import BadImage, DecodeOptions
from cnnlab.serve.config import MEGABYTE, ServeConfig
from cnnlab.serve.limits import RETRY_AFTER_S, DecodeBudget, serving_allocator
from cnnlab.serve.service import Decoded, Upload, decode_upload
from cnnlab.serve.views import edge_views, enlarge, heat_overlay, png_data_url, view_size

NO_PHOTO = ("no photo in the request: send multipart/form-data with one or more files, "
            "or the image bytes themselves as the body")
PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
               "img-src data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'")
IMAGE_BODY = {"schema": {"type": "string", "format": "binary"}}
UPLOAD_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "photos": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    "image/jpeg": IMAGE_BODY, "image/png": IMAGE_BODY, "application/octet-stream": IMAGE_BODY}}}


class PhotoResult(BaseModel):
    filename: str
    label: str | None
    probabilities: dict[str, float]
    threshold: float | None
    error: str | None
    # "unsupported" (not an image format), "bad" (broken image), "too_large" (can never fit the
    # decode memory) or "busy" (the decode memory stayed full: retry)
    error_kind: str | None


class PredictResponse(BaseModel):
    results: list[PhotoResult]
    error: str | None = None


class View(BaseModel):
    name: str
    description: str
    image: str  # a PNG data URL


class ExplainResponse(BaseModel):
    result: PhotoResult
    views: list[View]
    model_input: str | None
    grad_cam: str | None
    grad_cam_layer: str | None
    note: str | None


class ErrorResponse(BaseModel):
    error: str


ERRORS = {status: {"model": ErrorResponse} for status in (400, 413, 415, 503)}


def answer_status(rows: list[dict]) -> int:
    """200 when any photo was predicted; else 503 if the decode memory was full for one (a retry
    may work), 413 if every one was too large to decode here, 415 if none was an image format at
    all, else 400."""
    if any(row["error"] is None for row in rows):
        return 200
    kinds = {row["error_kind"] for row in rows}
    if "busy" in kinds:
        return 503
    if kinds == {"too_large"}:
        return 413
    return 415 if kinds == {"unsupported"} else 400


def answer_headers(status: int) -> dict | None:
    return {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None


def failure_summary(rows: list[dict]) -> str | None:
    failed = [row for row in rows if row["error"] is not None]
    if not failed:
        return None
    return "; ".join(f"{row['filename']}: {row['error']}" for row in failed)


async def read_uploads(request: Request, config: ServeConfig) -> list[Upload]:
    """The photos of a request (multipart files, or the raw body); HTTPException 400 if none."""
    content_type = request.headers.get("content-type", "").lower()
    uploads = []
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=config.max_photos, max_fields=config.max_photos,
                                  max_part_size=config.max_upload_bytes)
        try:
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    uploads.append(Upload(value.filename or name, await value.read()))
        finally:
            await form.close()
    elif content_type.startswith("application/x-www-form-urlencoded"):
        raise HTTPException(415, "a form without files: send multipart/form-data or the image bytes as the body")
    else:
        body = await request.body()
        if body:
            uploads.append(Upload(request.query_params.get("filename") or "upload", body))
    if not uploads:
        raise HTTPException(400, NO_PHOTO)
    return uploads


def create_app(service, config: ServeConfig) -> FastAPI:
    """The ASGI app around a PredictionService, the upload cap outermost."""
    service.budget = DecodeBudget(config.decode_memory_bytes)
    serving_allocator()
    app = FastAPI(title="cnnlab", version=_version(), docs_url=None, redoc_url=None,
                  description=f"Predictions of the trained run {service.classifier.run}. " + __doc__.split("\n\n")[1])
    page = resources.files("cnnlab.serve").joinpath("page.html").read_text(encoding="utf-8")

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        return JSONResponse({"error": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, error: RequestValidationError):
        return JSONResponse({"error": json.dumps(error.errors(), default=str)[:500]}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY, "X-Content-Type-Options": "nosniff"})

    @app.get("/health", summary="liveness, with the run's classes, threshold and preprocessing")
    async def health():
        return {"status": "ok", **service.describe(), "limits": {
            "max_upload_mb": config.max_upload_mb, "max_photos": config.max_photos,
            "decode_memory_mb": round(service.budget.capacity / MEGABYTE)}}

    @app.post("/predict", response_model=PredictResponse, responses=ERRORS, openapi_extra=UPLOAD_BODY,
              summary="label and class probabilities for one or more photos")
    async def predict(request: Request):
        uploads = await read_uploads(request, config)
        rows = await run_in_threadpool(service.predict, uploads)
        status = answer_status(rows)
        return JSONResponse({"results": rows, "error": failure_summary(rows)}, status_code=status,
                            headers=answer_headers(status))

    @app.post("/explain", response_model=ExplainResponse, responses=ERRORS, openapi_extra=UPLOAD_BODY,
              summary="one photo's prediction, edge-filter views and Grad-CAM, as PNG data URLs")
    async def explain(request: Request):
        uploads = await read_uploads(request, config)
        if len(uploads) != 1:
            raise HTTPException(400, f"/explain takes one photo, got {len(uploads)}")
        answer = await run_in_threadpool(explain_upload, service, uploads[0])
        status = answer_status([answer["result"]])
        if status != 200:
            return JSONResponse({"error": answer["result"]["error"], **answer}, status_code=status,
                                headers=answer_headers(status))
        return answer

    return app


def explain_upload(service, upload: Upload) -> dict:
    """Runs in a worker thread: decode once for the model, once at viewing size for the filters,
    holding decode memory for the larger of the two throughout."""
    options = [service.classifier.options]
    try:
        options.append(DecodeOptions(*view_size(upload.data)))
    except BadImage:
        pass  # decode_upload says why
    with service.reserved(upload.data, *options) as refusal:
        decoded = Decoded(upload.filename, None, *refusal) if refusal else decode_upload(upload, options[0])
        (row,) = service.predict_decoded([decoded])
        answer = {"result": row, "views": [], "model_input": None, "grad_cam": None, "grad_cam_layer": None,
                  "note": None}
        if decoded.error is not None:
            return answer
        answer["views"] = edge_views(upload.data)
    answer["model_input"] = png_data_url(enlarge(decoded.pixels))
    heatmap, detail = service.grad_cam(decoded.pixels)
    if heatmap is None:
        answer["note"] = detail
    else:
        answer["grad_cam"] = png_data_url(enlarge(heat_overlay(decoded.pixels, heatmap)))
        answer["grad_cam_layer"] = detail
        answer["note"] = "Grad-CAM explains the class with the larger probability"
    return answer


def _version() -> str:
    from cnnlab.version import __version__

    return __version__
