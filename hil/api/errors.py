"""The one mapping from the project's errors to HTTP status codes, and its handlers.

==========================================  ======  ==========================================
error                                       status  meaning
==========================================  ======  ==========================================
``UnknownResource``                         404     no bench or run of that id
``ConfigError``                             422     a bad config or argument; nothing touched
``SafetyError``                             422     outside a bench limit; nothing applied
``ConvergenceError``, ``SimulationError``   422     the circuit did not settle for these inputs
``InUseError``                              409     leased by another, or training a run
``EmergencyStop``                           409     the bench was emergency-stopped
``InstrumentError``                         502     an instrument failed (the bench, not you)
``EngineUnavailable``                       503     the simulator's engine cannot be loaded
any other ``HilError``                      500     a fault of the server, logged
==========================================  ======  ==========================================

Request validation (FastAPI's, malformed JSON included) answers 422 with FastAPI's list of
``{loc, msg, type}`` (without echoing the input back); a body over the limit 413; a missing or
wrong token 401, a token without the scope 403. Every other answer of an error is
``{"detail": message, "error": class name, "field": name or null}``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from hil.errors import (
    ConfigError,
    ConvergenceError,
    EmergencyStop,
    EngineUnavailable,
    HilError,
    InstrumentError,
    InUseError,
    SafetyError,
    SimulationError,
)

log = logging.getLogger(__name__)


class UnknownResource(HilError, LookupError):
    """No bench or run of the id a request names."""


class FieldError(SafetyError):
    """A :class:`~hil.errors.SafetyError` about one field of a request.

    Parameters
    ----------
    field : str
        The request field (``inputs``, ``amplitude_v``, ...).
    message : str
        The bench's words: the quantity, the limit and what was given.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


#: Status code of each error class; the most specific class in an error's MRO wins.
STATUS: dict[type[HilError], int] = {
    UnknownResource: 404,
    ConfigError: 422,
    SafetyError: 422,
    ConvergenceError: 422,
    SimulationError: 422,
    InUseError: 409,
    EmergencyStop: 409,
    InstrumentError: 502,
    EngineUnavailable: 503,
    HilError: 500,
}


def status_of(error: HilError) -> int:
    """The HTTP status of an error (see :data:`STATUS`)."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_body(error: BaseException, field: str | None = None) -> dict[str, Any]:
    """``{"detail", "error", "field"}`` of an error (a FieldError is named a SafetyError)."""
    name = "SafetyError" if isinstance(error, FieldError) else type(error).__name__
    return {"detail": str(error), "error": name, "field": field}


async def _hil_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HilError)
    status = status_of(exc)
    if status >= 500:
        log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    field = exc.field if isinstance(exc, FieldError) else None
    return JSONResponse(error_body(exc, field), status_code=status)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # The input is left out: a 1 MiB array should not come back, nor a token-like string.
    errors = [_plain(e) for e in exc.errors()]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def _plain(error: Any) -> dict[str, Any]:
    out = {k: error[k] for k in ("loc", "msg", "type") if k in error}
    if error.get("ctx"):  # the limit that was broken (``le: 3600``); exceptions as words
        out["ctx"] = {
            k: v if isinstance(v, int | float | str | bool) else str(v)
            for k, v in error["ctx"].items()
        }
    return out


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path)
    body = {"detail": "internal error (logged by the server)", "error": "InternalError"}
    return JSONResponse({**body, "field": None}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers of this mapping on ``app``."""
    app.add_exception_handler(HilError, _hil_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
