"""The studio's door: the token, the Host header and cross-site requests, checked before any route.

- Token: when the studio has one (required when it listens beyond this machine), every request
  must carry it: the X-Studio-Token header or the cookie the page gets by opening it once with
  ?token=SECRET (answered with a redirect that sets the cookie, so the secret leaves the address
  bar and the history). Compared in constant time.
- Host: listening on loopback only, a request must name a loopback host. A web page elsewhere
  can point its own domain at 127.0.0.1 (DNS rebinding) and would otherwise read the studio as
  its own origin: photos, runs and all.
- Cross-site writes: a state-changing request (POST) must carry X-Studio: 1. Any web page can
  make the browser POST a form to 127.0.0.1, but not with a custom header (that needs a CORS
  pre-flight, which the studio never grants), so no other site can start or stop training.
"""

from __future__ import annotations

import hmac
import json
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

TOKEN_HEADER = b"x-studio-token"
TOKEN_COOKIE = "cnnlab_studio_token"
WRITE_HEADER = b"x-studio"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


def host_name(host: str) -> str:
    """'127.0.0.1:8500' -> '127.0.0.1', '[::1]:8500' -> '[::1]'."""
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    def __init__(self, app, token: str | None, loopback_only: bool):
        self.app = app
        self.token = token
        self.loopback_only = loopback_only

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.loopback_only:
            host = headers.get(b"host", b"").decode("latin-1").lower()
            if host_name(host) not in LOOPBACK_NAMES:
                await answer(send, 403, f"the studio answers requests for this machine only, not for host {host[:60]!r}")
                return
        if self.token is not None:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            if "token" in query:
                await self._token_from_address(scope, send, query)
                return
            if not self._has_token(headers):
                await answer(send, 401, "this studio needs its token: open it once as /?token=SECRET "
                                        "(or send the X-Studio-Token header)")
                return
        if scope["method"] in WRITE_METHODS and headers.get(WRITE_HEADER) != b"1":
            await answer(send, 403, "state-changing requests need the header X-Studio: 1 (the studio's page sends it; "
                                    "other web sites cannot)")
            return
        await self.app(scope, receive, send)

    def _matches(self, value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), self.token.encode())

    def _has_token(self, headers: dict) -> bool:
        if self._matches(headers.get(TOKEN_HEADER, b"").decode("latin-1") or None):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
        except Exception:  # noqa: BLE001 - a malformed cookie header is no token
            return False
        return TOKEN_COOKIE in cookie and self._matches(cookie[TOKEN_COOKIE].value)

    async def _token_from_address(self, scope, send, query: dict) -> None:
        if not self._matches(query.pop("token")):
            await answer(send, 401, "wrong token")
            return
        location = scope.get("path", "/") + (f"?{urlencode(query)}" if query else "")
        await send({"type": "http.response.start", "status": 303, "headers": [
            (b"location", location.encode("latin-1")),
            (b"set-cookie", f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode("latin-1")),
            (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


async def answer(send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
