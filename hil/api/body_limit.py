"""A limit on request bodies (413), before any route reads them."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """ASGI middleware answering 413 to a body over ``max_bytes`` (declared or streamed).

    The body is read here, at most ``max_bytes`` of it, and handed on whole; what the app
    reads after it (a disconnect) comes from the client as usual.

    Parameters
    ----------
    app : ASGI app
    max_bytes : int
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse an oversized body, or hand the app the body read here."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send, 413 if declared.isdigit() else 400)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away before the body
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, 413)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: list[bytes] | None = [b"".join(chunks)]

        async def replay() -> Message:
            nonlocal body
            if body is not None:
                whole, body = body[0], None
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, status: int) -> None:
        detail = (
            f"request body over the limit of {self.max_bytes} bytes"
            if status == 413
            else "invalid Content-Length"
        )
        payload = json.dumps({"detail": detail, "error": "BodyTooLarge", "field": None}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
