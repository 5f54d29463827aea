"""What ngspice prints, and the errors it means.

ngspice returns success from almost every API call and reports problems only as text, so
the binding captures the output of each call (:mod:`simulators.spice.library`) and this
module reads it: lines mentioning an error raise :class:`NgSpiceError` (a
:class:`~hil.errors.SimulationError`) carrying ngspice's own words, a failed operating point
raises :class:`NgSpiceConvergenceError` (a :class:`~hil.errors.ConvergenceError`; by default
also when only ngspice's transient-op fallback found a point), and warnings become log
records on the ``simulators.spice`` logger.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence

from hil.errors import ConvergenceError, SimulationError

_LOG = logging.getLogger("simulators.spice")

# Final failure messages of an operating point: ngspice prints these only after gmin
# stepping, source stepping and the transient op have all given up.
_CONVERGENCE_MARKERS = (
    "timestep too small",
    "simulation(s) aborted",
    "no convergence",
    "iteration limit reached",
    "dc solution failed",
)
_ERROR_RE = re.compile(r"\berror\b|no such command|cannot recover", re.IGNORECASE)
_WARNING_RE = re.compile(r"\bwarning\b", re.IGNORECASE)
# Progress chatter of gmin/source stepping: kept in the log, left out of exception text.
_PROGRESS_RE = re.compile(
    r"^(note:|trying gmin|supplies reduced)|gmin step|source step|gmin increment", re.IGNORECASE
)
# The last resort of an op: integrate in time until nothing moves. It "succeeds" even for a
# node with no DC path (returning a made-up voltage), so its result is not trusted by default.
_TRANSIENT_OP_MARKER = "transient op finished successfully"
_VERSION_RE = re.compile(r"\*\* ngspice-(\S+)")
_MAX_MESSAGE_LINES = 12


class NgSpiceError(SimulationError):
    """ngspice rejected a netlist or a command.

    Parameters
    ----------
    message : str
        What failed, followed by ngspice's own error lines.
    command : str
        The command or action that failed ('' when none).
    output : Iterable[str]
        Every line ngspice printed during the failed call, for diagnosis.
    """

    def __init__(self, message: str, command: str = "", output: Iterable[str] = ()) -> None:
        self.command = command
        self.output = tuple(output)
        super().__init__(message)


class NgSpiceConvergenceError(ConvergenceError):
    """ngspice could not find an operating point (Newton, gmin, source stepping all failed).

    Parameters
    ----------
    message : str
        What failed, followed by ngspice's own error lines.
    command : str
        The analysis command that failed.
    output : Iterable[str]
        Every line ngspice printed, including its table of last node voltages.
    """

    def __init__(self, message: str, command: str = "", output: Iterable[str] = ()) -> None:
        self.command = command
        self.output = tuple(output)
        super().__init__(message)


def banner_version(lines: Iterable[str]) -> str:
    """The ngspice version in a start-up banner (e.g. ``'39'``); '' when none is found."""
    for line in lines:
        match = _VERSION_RE.search(line)
        if match:
            return match.group(1)
    return ""


def log_line(line: str) -> None:
    """Forward one ngspice output line to the ``simulators.spice`` logger."""
    text = strip_stream(line)
    if _ERROR_RE.search(text):
        _LOG.error("ngspice: %s", text)
    elif _PROGRESS_RE.search(text):
        # gmin/source stepping narrates its attempts as warnings; the outcome is what counts
        _LOG.debug("ngspice: %s", text)
    elif _WARNING_RE.search(text):
        _LOG.warning("ngspice: %s", text)
    else:
        _LOG.debug("ngspice: %s", text)


def strip_stream(line: str) -> str:
    """Remove the 'stdout '/'stderr ' prefix sharedspice puts on every line."""
    for prefix in ("stdout ", "stderr "):
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    return line.strip()


def error_text(lines: Sequence[str]) -> str:
    """The stderr lines of ngspice worth showing a user (stepping chatter left out)."""
    picked = []
    for line in lines:
        if not line.startswith("stderr "):
            continue
        text = strip_stream(line)
        if text and not _PROGRESS_RE.search(text):
            picked.append(text)
    return "; ".join(picked[-_MAX_MESSAGE_LINES:])


def check_output(
    lines: Sequence[str], action: str, analysis: bool = False, transient_op: bool = True
) -> None:
    """Raise if ngspice reported an error or, for an analysis, a failed solve.

    ``transient_op=False`` also rejects an operating point that only the transient-op
    fallback found.
    """
    texts = [strip_stream(line).lower() for line in lines]
    if analysis and any(m in t for t in texts for m in _CONVERGENCE_MARKERS):
        raise NgSpiceConvergenceError(
            f"ngspice {action!r} did not converge: {error_text(lines)}", action, lines
        )
    if analysis and any(_TRANSIENT_OP_MARKER in t for t in texts):
        if not transient_op:
            raise NgSpiceConvergenceError(
                f"ngspice {action!r}: Newton, gmin and source stepping all failed and only the "
                "transient-op fallback returned a point, which is not a DC solution when a "
                f"node has no DC path to ground: {error_text(lines)}",
                action,
                lines,
            )
        _LOG.warning("ngspice %r: operating point found only by the transient-op fallback", action)
    if any(line.startswith("stderr ") and _ERROR_RE.search(line) for line in lines):
        raise NgSpiceError(f"ngspice rejected {action!r}: {error_text(lines)}", action, lines)
