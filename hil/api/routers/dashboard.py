"""The lab dashboard: static pages under ``/ui/`` (``/`` leads there).

The pages hold no data: they are served without a token, and their scripts read everything
through the same REST API and event streams a script would use, sending the token the user
entered (kept in the browser's session storage). Only the files shipped in
``hil/api/static`` are served, each with a policy that lets a page load nothing but this
server's own scripts and styles.
"""

from __future__ import annotations

import functools
import mimetypes
from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse, RedirectResponse

#: The folder of the pages, their scripts and styles.
STATIC = Path(__file__).resolve().parent.parent / "static"

#: Content types of the files shipped (mimetypes' answer for `.js` varies by platform).
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}

HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    ),
}

router = APIRouter(include_in_schema=False)


@functools.cache
def shipped_files() -> dict[str, Path]:
    """The files the dashboard serves, by their name under ``/ui/`` (listed once)."""
    if not STATIC.is_dir():
        return {}
    return {p.name: p for p in sorted(STATIC.iterdir()) if p.is_file() and p.suffix in TYPES}


def _file(name: str) -> FileResponse:
    path = shipped_files().get(name)
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"the dashboard has no file {name!r}")
    media = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    return FileResponse(path, media_type=media, headers=HEADERS)


@router.get("/")
async def root() -> RedirectResponse:
    """The dashboard's runs page."""
    return RedirectResponse("/ui/", status_code=status.HTTP_307_TEMPORARY_REDIRECT)


@router.get("/ui")
async def ui_folder() -> RedirectResponse:
    """``/ui/`` (relative links in the pages need the slash)."""
    return RedirectResponse("/ui/", status_code=status.HTTP_307_TEMPORARY_REDIRECT)


@router.get("/ui/")
async def ui_index() -> FileResponse:
    """The runs page."""
    return _file("index.html")


@router.get("/ui/{name}")
async def ui_file(name: str) -> FileResponse:
    """One shipped file; 404 for anything else."""
    return _file(name)
