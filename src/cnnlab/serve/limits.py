"""The request-body cap of `cnnlab serve`, as pure ASGI middleware around the whole app.

It sits outside FastAPI so that no route, form parser or spooled temporary file ever holds more
than the cap: a Content-Length over it is refused at once; a body without one (chunked) is
counted as it streams and refused as soon as it passes the cap. The rest of an oversized body
is read and thrown away (up to DRAIN_LIMIT) before answering, because HTTP clients send the
whole body before reading the answer: closing on them mid-upload shows up as a reset
connection instead of the 413 that says what was wrong.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException

DRAIN_LIMIT = 256 * 1024 * 1024  # past this much, the connection is dropped rather than drained
BODY_METHODS = (b"POST", b"PUT", b"PATCH")


class UploadLimit:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"].encode() not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _answer(send, 400, f"bad Content-Length header {declared[:40].decode('latin-1')!r}")
                return
            if int(declared) > self.max_bytes:
                if int(declared) <= DRAIN_LIMIT:
                    await _drain(receive)
                await _answer(send, 413, self._too_large(f"{int(declared):,} bytes"))
                return

        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await _drain(receive, already=received)
                    # Raised inside the route, where FastAPI's exception handlers turn it into the
                    # JSON 413 (an exception escaping the app would become a 500 on its way out).
                    raise HTTPException(413, self._too_large(f"more than {self.max_bytes:,} bytes"))
            return message

        await self.app(scope, counted_receive, send)

    def _too_large(self, size: str) -> str:
        return (f"upload too large: {size}, over the cap of {self.max_bytes / 1024 / 1024:g} MB per request "
                "(cnnlab serve --max-upload-mb)")


async def _drain(receive, already: int = 0) -> None:
    """Read and discard the rest of the body, up to DRAIN_LIMIT bytes in all."""
    total = already
    while total <= DRAIN_LIMIT:
        message = await receive()
        if message["type"] != "http.request":
            return
        total += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _answer(send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
