"""ctypes binding to ngspice's shared library (``libngspice.so.0``).

The binding loads the library, runs netlists and commands in the caller's thread (no
background thread) and reads the vectors of the result plots into numpy.

Process-global state
--------------------
ngspice keeps all its state (circuits, plots, options, the output callbacks) in C globals,
so one loaded copy of the library is one simulator per process. This module therefore loads
each library path once per process, lazily, behind a lock (:func:`_library`); every
:class:`NgSpice` object made for the same path shares that one copy and its lock. An
:class:`NgSpice` may be used from any thread, but only one thread at a time gets into
ngspice: every call holds the shared lock. A sequence of calls that must not be interleaved
with another thread's (load, alter, op, read) should hold :attr:`NgSpice.lock` around it.

The one exception to "loaded once": when ngspice hits an error it cannot recover from
(e.g. an undefined ``{parameter}`` in a netlist) it calls the ControlledExit callback and
refuses all further circuits until the library is detached. The binding then unloads the
library (``dlclose``) and loads it afresh, so the caller gets an exception and the next
circuit runs normally (options and variables set by commands are lost with it).

Like the ngspice program, the library sources ``.spiceinit`` from the working directory or
the home directory when it is loaded; such a file can change simulator behaviour.

Memory
------
ngspice keeps a record of every command it runs and never frees it (0.1-0.4 kB each); the
binding frees it after every command, so re-solving a circuit millions of times does not
grow the process. Result plots are destroyed after reading and at most one circuit is kept.

Errors
------
ngspice returns success from almost every API call and reports problems only as text, so
the binding captures the output of each call: lines mentioning an error raise
:class:`NgSpiceError` (a :class:`~hil.errors.SimulationError`) carrying ngspice's own
words, a failed operating point raises :class:`NgSpiceConvergenceError` (a
:class:`~hil.errors.ConvergenceError`; by default also when only ngspice's transient-op
fallback found a point, see ``allow_transient_op``), warnings become log records on the
``simulators.spice`` logger, and a library that cannot be loaded raises
:class:`~hil.errors.EngineUnavailable` naming the Debian package ``libngspice0``.
"""

from __future__ import annotations

import _ctypes
import ctypes
import ctypes.util
import logging
import math
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from hil.errors import ConvergenceError, EngineUnavailable, SimulationError

__all__ = [
    "DEFAULT_LIBRARY",
    "DEBIAN_PACKAGE",
    "LIBRARY_ENV",
    "NGSPICE_BOLTZMANN",
    "NGSPICE_CHARGE",
    "NGSPICE_EPSMIN",
    "NGSPICE_GMIN",
    "NGSPICE_TEMPERATURE",
    "TIGHT_OP_OPTIONS",
    "NgSpice",
    "NgSpiceConvergenceError",
    "NgSpiceError",
]

_LOG = logging.getLogger("simulators.spice")

#: Soname of the library shipped by Debian's ``libngspice0`` package.
DEFAULT_LIBRARY = "libngspice.so.0"
#: Debian package that provides :data:`DEFAULT_LIBRARY`.
DEBIAN_PACKAGE = "libngspice0"
#: Environment variable that overrides the library path.
LIBRARY_ENV = "NGSPICE_LIBRARY"

#: An ``.options`` line that makes ngspice's operating point agree with an exact Newton
#: solution to ~1e-15 V (tests/test_ngspice.py; with the defaults the error reaches ~1e-5 V).
#: Newton stops only when every node moves less than ``reltol * |v| + vntol`` and every
#: device current is converged to ``reltol * |i| + abstol``; quadratic convergence then
#: leaves the last iterate far more accurate than that. Device bypass is off so no device
#: reuses a stale linearisation, and ``itl1`` gives Newton room before gmin stepping starts.
#: ``gmin`` stays at ngspice's default on purpose: it is part of the device models.
TIGHT_OP_OPTIONS = ".options reltol=1e-9 abstol=1e-15 vntol=1e-12 bypass=0 itl1=500"

# Physical constants and defaults of ngspice 39's device models, established by backing them
# out of solved operating points (tests/test_ngspice.py checks each one):
#: Boltzmann constant (J/K) in ngspice 39's const.h: CODATA 2014, not the exact SI 2019 value.
NGSPICE_BOLTZMANN = 1.38064852e-23
#: Elementary charge (C) in ngspice 39's const.h: CODATA 2014.
NGSPICE_CHARGE = 1.6021766208e-19
#: Default circuit temperature and TNOM: 27 degC in kelvin (CONSTCtoK = 273.15).
NGSPICE_TEMPERATURE = 300.15
#: Default ``gmin`` (S): diodes add ``gmin * vd`` in parallel with the junction current;
#: ``.options gmin=...`` changes it for every diode.
NGSPICE_GMIN = 1e-12
#: Default ``epsmin``: a diode's saturation current IS is raised to at least this value.
NGSPICE_EPSMIN = 1e-28

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
_MAX_REMCIRC = 1000
_MAX_COMMAND_BYTES = 1023
_NODE_RE = re.compile(r"^v\((.*)\)$", re.IGNORECASE)

_VF_REAL = 1  # vector flag: v_realdata is valid (else v_compdata)


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


class _VectorInfo(ctypes.Structure):
    """``struct vector_info`` of sharedspice.h (returned by ``ngGet_Vec_Info``)."""

    _fields_ = [
        ("v_name", ctypes.c_char_p),
        ("v_type", ctypes.c_int),
        ("v_flags", ctypes.c_short),
        ("v_realdata", ctypes.POINTER(ctypes.c_double)),
        ("v_compdata", ctypes.POINTER(ctypes.c_double)),  # ngcomplex_t = {double re, im}
        ("v_length", ctypes.c_int),
    ]


# Callback prototypes of sharedspice.h; ``bool`` there is C99 _Bool.
_SendChar = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p)
_SendStat = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p)
_ControlledExit = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_int, ctypes.c_bool, ctypes.c_bool, ctypes.c_int, ctypes.c_void_p
)
_BGThreadRunning = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_bool, ctypes.c_int, ctypes.c_void_p)


class _Library:
    """One process-global copy of libngspice, its callbacks and its captured output.

    Parameters
    ----------
    path : str
        File name or path handed to ``dlopen``.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.version = ""
        self.bg_running = False
        self._lines: list[str] = []
        self._quiet = False
        self._exit_status: int | None = None
        self._quit = False
        # ctypes does not keep callback objects alive; ngspice holds raw pointers to them
        # for the life of the process, so they live as long as this object.
        self._callbacks = (
            _SendChar(self._on_char),
            _SendStat(self._on_stat),
            _ControlledExit(self._on_exit),
            _BGThreadRunning(self._on_bg),
        )
        self.cdll = self._open()
        self._init()

    # -- loading -------------------------------------------------------------------------

    def _open(self) -> ctypes.CDLL:
        """Load the shared object and declare the signatures used."""
        try:
            cdll = ctypes.CDLL(self.path)
        except OSError as exc:
            raise EngineUnavailable(
                f"cannot load the ngspice shared library {self.path!r}: {exc}. Install the "
                f"Debian package {DEBIAN_PACKAGE} (apt-get install {DEBIAN_PACKAGE}) or set "
                f"{LIBRARY_ENV} to the path of libngspice.so"
            ) from exc
        _declare(cdll)
        return cdll

    def _init(self) -> None:
        """Call ``ngSpice_Init`` with our callbacks and record the version banner."""
        send_char, send_stat, exit_cb, bg_cb = self._callbacks
        self._lines = []
        # SendData / SendInitData are NULL: vectors are read on demand with ngGet_Vec_Info,
        # which avoids a Python callback per data point.
        rc = self.cdll.ngSpice_Init(send_char, send_stat, exit_cb, None, None, bg_cb, None)
        lines, self._lines = self._lines, []
        if rc != 0:
            raise EngineUnavailable(f"ngSpice_Init of {self.path!r} returned {rc}")
        for line in lines:
            match = _VERSION_RE.search(line)
            if match:
                self.version = match.group(1)
                break

    def reload(self) -> None:
        """Unload the library and load it afresh (ngspice's only recovery after an exit).

        Raises
        ------
        EngineUnavailable
            If the reloaded library is still unusable, which happens when something else
            in the process holds the same library open so ``dlclose`` cannot unload it.
        """
        _LOG.info("reloading ngspice from %s", self.path)
        handle = self.cdll._handle
        self.cdll = None  # drop the CDLL before dlclose so nothing calls into unmapped code
        _ctypes.dlclose(handle)
        self.cdll = self._open()
        self._init()
        self._probe()

    def _probe(self) -> None:
        """Check that a fresh copy really accepts circuits (it did not if dlclose failed)."""
        self._exit_status = None
        with self.captured(quiet=True):
            self.circ(["* probe", "r1 1 0 1", ".end"])
        if self._exit_status is not None:
            self._exit_status = None
            raise EngineUnavailable(
                f"ngspice ({self.path}) stays unusable after a fatal error and could not be "
                "reloaded (is it loaded elsewhere in this process?); restart the process"
            )
        self.clear_circuits()

    # -- callbacks: must never raise, ngspice cannot propagate Python exceptions ----------

    def _on_char(self, text: bytes | None, _ident: int, _user: int | None) -> int:
        line = (text or b"").decode("utf-8", errors="replace")
        self._lines.append(line)
        if self._quiet:
            _LOG.debug("ngspice: %s", _strip_stream(line))
        else:
            _log_line(line)
        return 0

    def _on_stat(self, text: bytes | None, _ident: int, _user: int | None) -> int:
        _LOG.debug("ngspice status: %s", (text or b"").decode("utf-8", errors="replace"))
        return 0

    def _on_exit(
        self, status: int, _immediate: bool, quit_: bool, _ident: int, _user: int | None
    ) -> int:
        # Returning (instead of exiting) makes ngspice longjmp back into the API call;
        # the call's wrapper then reloads the library.
        self._exit_status = status
        self._quit = bool(quit_)
        return 0

    def _on_bg(self, running: bool, _ident: int, _user: int | None) -> int:
        # ngspice passes True when the background thread is NOT running (sharedspice.h).
        self.bg_running = not running
        return 0

    # -- calls with captured output -------------------------------------------------------

    @contextmanager
    def captured(self, quiet: bool = False) -> Iterator[list[str]]:
        """Collect the lines printed during the block into the yielded list.

        ``quiet`` logs them at DEBUG only: for housekeeping whose complaints are expected.
        Blocks may nest (a reload runs inside a failed call); the outer one resumes after.
        """
        outer_lines, outer_quiet = self._lines, self._quiet
        self._lines = []
        self._exit_status = None
        self._quiet = quiet or outer_quiet
        out: list[str] = []
        try:
            yield out
        finally:
            out.extend(self._lines)
            self._lines, self._quiet = outer_lines, outer_quiet

    def take_exit(self) -> tuple[int, bool] | None:
        """Return and clear ``(status, quit)`` if ngspice asked to be detached."""
        if self._exit_status is None:
            return None
        status, self._exit_status = self._exit_status, None
        return status, self._quit

    def command(self, cmd: str) -> int:
        """Run one command line; the return code is 1 only after a controlled exit."""
        encoded = cmd.encode()
        if len(encoded) > _MAX_COMMAND_BYTES:
            # sharedspice copies commands into a 1024-byte buffer and would cut this one
            raise ValueError(f"ngspice command longer than {_MAX_COMMAND_BYTES} bytes: {cmd!r}")
        rc = self.cdll.ngSpice_Command(encoded)
        # ngspice keeps every command in its control structures (~0.1-0.4 kB each, never
        # freed); a NULL command frees them (<1 us) without touching circuits, options or
        # variables. Without this, a million alter+op solves would leak about 700 MB.
        self.cdll.ngSpice_Command(None)
        return rc

    def clear_circuits(self) -> None:
        """Remove every loaded circuit (``remcirc`` until ngspice says there is none).

        A netlist that fails to parse is sometimes added to ngspice's circuit list and
        sometimes not, so counting our own loads is not enough to know what is there.
        """
        for _ in range(_MAX_REMCIRC):
            with self.captured(quiet=True) as lines:
                self.command("remcirc")
            if any("no circuit loaded" in line for line in lines):
                return
        _LOG.warning("ngspice still holds circuits after %d 'remcirc'", _MAX_REMCIRC)

    def first_value(self, name: str) -> float:
        """First element of a real vector of the current plot (the value of an op)."""
        # No output capture here: this runs once per node per solve, and ngspice prints
        # only when the vector is missing (that line still reaches the log).
        info = self.cdll.ngGet_Vec_Info(name.encode())
        if not info or not info.contents.v_realdata or info.contents.v_length < 1:
            raise NgSpiceError(f"ngspice has no real value for {name!r}", name)
        return info.contents.v_realdata[0]

    def circ(self, lines: Sequence[str]) -> int:
        """Hand a netlist to ngspice as a NULL-terminated ``char**``."""
        encoded = [line.encode() for line in lines]
        array = (ctypes.c_char_p * (len(encoded) + 1))(*encoded, None)
        return self.cdll.ngSpice_Circ(array)


def _declare(cdll: ctypes.CDLL) -> None:
    """Set argtypes/restype so ctypes converts arguments and pointers correctly."""
    cdll.ngSpice_Init.argtypes = [
        _SendChar, _SendStat, _ControlledExit, ctypes.c_void_p, ctypes.c_void_p,
        _BGThreadRunning, ctypes.c_void_p,
    ]  # fmt: skip
    cdll.ngSpice_Init.restype = ctypes.c_int
    cdll.ngSpice_Command.argtypes = [ctypes.c_char_p]
    cdll.ngSpice_Command.restype = ctypes.c_int
    cdll.ngSpice_Circ.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
    cdll.ngSpice_Circ.restype = ctypes.c_int
    cdll.ngGet_Vec_Info.argtypes = [ctypes.c_char_p]
    cdll.ngGet_Vec_Info.restype = ctypes.POINTER(_VectorInfo)
    cdll.ngSpice_CurPlot.argtypes = []
    cdll.ngSpice_CurPlot.restype = ctypes.c_char_p
    cdll.ngSpice_AllPlots.argtypes = []
    cdll.ngSpice_AllPlots.restype = ctypes.POINTER(ctypes.c_char_p)
    cdll.ngSpice_AllVecs.argtypes = [ctypes.c_char_p]
    cdll.ngSpice_AllVecs.restype = ctypes.POINTER(ctypes.c_char_p)
    cdll.ngSpice_running.argtypes = []
    cdll.ngSpice_running.restype = ctypes.c_bool


def _log_line(line: str) -> None:
    """Forward one ngspice output line to the ``simulators.spice`` logger."""
    text = _strip_stream(line)
    if _ERROR_RE.search(text):
        _LOG.error("ngspice: %s", text)
    elif _PROGRESS_RE.search(text):
        # gmin/source stepping narrates its attempts as warnings; the outcome is what counts
        _LOG.debug("ngspice: %s", text)
    elif _WARNING_RE.search(text):
        _LOG.warning("ngspice: %s", text)
    else:
        _LOG.debug("ngspice: %s", text)


def _strip_stream(line: str) -> str:
    """Remove the 'stdout '/'stderr ' prefix sharedspice puts on every line."""
    for prefix in ("stdout ", "stderr "):
        if line.startswith(prefix):
            return line[len(prefix) :].strip()
    return line.strip()


_LIBRARIES: dict[str, _Library] = {}
_LIBRARIES_LOCK = threading.Lock()


def _resolve_path(library: str | os.PathLike[str] | None) -> str:
    """Pick the library path: argument, then $NGSPICE_LIBRARY, then the Debian soname."""
    if library is not None:
        return os.fspath(library)
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return env
    return DEFAULT_LIBRARY


def _library(library: str | os.PathLike[str] | None = None) -> _Library:
    """Return the process-wide copy of the library, loading it on first use."""
    path = _resolve_path(library)
    with _LIBRARIES_LOCK:
        lib = _LIBRARIES.get(path)
        if lib is None:
            try:
                lib = _Library(path)
            except EngineUnavailable:
                # Only the Debian soname may live elsewhere: ask ldconfig before giving up.
                found = ctypes.util.find_library("ngspice") if path == DEFAULT_LIBRARY else None
                if not found or found == path:
                    raise
                lib = _Library(found)
            _LIBRARIES[path] = lib
        return lib


def _error_text(lines: Sequence[str]) -> str:
    """ngspice's stderr lines worth showing a user (stepping chatter left out)."""
    picked = []
    for line in lines:
        if not line.startswith("stderr "):
            continue
        text = _strip_stream(line)
        if text and not _PROGRESS_RE.search(text):
            picked.append(text)
    return "; ".join(picked[-_MAX_MESSAGE_LINES:])


def _check(
    lines: Sequence[str], action: str, analysis: bool = False, transient_op: bool = True
) -> None:
    """Raise if ngspice reported an error or, for an analysis, a failed solve.

    ``transient_op=False`` also rejects an operating point that only the transient-op
    fallback found.
    """
    texts = [_strip_stream(line).lower() for line in lines]
    if analysis and any(m in t for t in texts for m in _CONVERGENCE_MARKERS):
        raise NgSpiceConvergenceError(
            f"ngspice {action!r} did not converge: {_error_text(lines)}", action, lines
        )
    if analysis and any(_TRANSIENT_OP_MARKER in t for t in texts):
        if not transient_op:
            raise NgSpiceConvergenceError(
                f"ngspice {action!r}: Newton, gmin and source stepping all failed and only the "
                "transient-op fallback returned a point, which is not a DC solution when a "
                f"node has no DC path to ground: {_error_text(lines)}",
                action,
                lines,
            )
        _LOG.warning("ngspice %r: operating point found only by the transient-op fallback", action)
    if any(line.startswith("stderr ") and _ERROR_RE.search(line) for line in lines):
        raise NgSpiceError(f"ngspice rejected {action!r}: {_error_text(lines)}", action, lines)


def _format_value(value: float) -> str:
    """Shortest text that parses back to exactly ``value`` (so alter loses no precision)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot pass a non-finite value to ngspice: {value!r}")
    return repr(value)


def _c_strings(array: ctypes._Pointer | None) -> list[str]:
    """Decode a NULL-terminated ``char**`` owned by ngspice."""
    names: list[str] = []
    if not array:
        return names
    index = 0
    while array[index] is not None:
        names.append(array[index].decode())
        index += 1
    return names


class NgSpice:
    """A handle on the process-wide ngspice shared library.

    Parameters
    ----------
    library : str or os.PathLike, optional
        Library to load. Default: ``$NGSPICE_LIBRARY`` if set, else ``libngspice.so.0``
        (Debian package ``libngspice0``). Each distinct path is loaded once per process and
        shared by every ``NgSpice`` made for it.
    allow_transient_op : bool
        Accept an operating point that ngspice found only with its last resort, a transient
        run to steady state (after Newton, gmin and source stepping failed). Off by default:
        for a node without a DC path that "solution" is an arbitrary voltage.

    Raises
    ------
    EngineUnavailable
        If the library cannot be loaded or initialised.

    Notes
    -----
    ngspice holds one list of circuits per process. :meth:`load_circuit` empties it before
    loading, so at most one circuit is ever loaded: loading through any ``NgSpice`` object
    replaces the circuit of every other object on the same library. Every analysis run
    through :meth:`run_op` destroys its result plot after reading it, so memory does not
    grow when the same circuit is re-solved many times.

    Examples
    --------
    >>> sim = NgSpice()
    >>> op = sim.operating_point(["divider", "vin1 in 0 dc 1", "r1 in out 1k", "r2 out 0 1k"])
    >>> op["out"], op["vin1#branch"]
    (0.5, -0.0005)
    >>> sim.alter("vin1", 0.3, "dc")  # re-solve the loaded circuit for a new input
    >>> round(sim.run_op()["out"], 12)
    0.15
    """

    def __init__(
        self, library: str | os.PathLike[str] | None = None, allow_transient_op: bool = False
    ) -> None:
        self._lib = _library(library)
        self.allow_transient_op = allow_transient_op

    # -- properties -----------------------------------------------------------------------

    @property
    def lock(self) -> threading.RLock:
        """Re-entrant lock shared by every user of this library copy; hold it across calls
        that must not interleave with another thread's (e.g. alter, op, read)."""
        return self._lib.lock

    @property
    def version(self) -> str:
        """ngspice version from the library's start-up banner (e.g. ``'39'``)."""
        return self._lib.version

    @property
    def library_path(self) -> str:
        """The path that was handed to ``dlopen``."""
        return self._lib.path

    # -- low level ------------------------------------------------------------------------

    def command(self, cmd: str) -> list[str]:
        """Run one ngspice command line in the calling thread.

        Parameters
        ----------
        cmd : str
            An interactive ngspice command, e.g. ``'alter vin1 dc=0.3'`` or ``'op'``.

        Returns
        -------
        list[str]
            The lines ngspice printed (with their ``stdout``/``stderr`` prefix).

        Raises
        ------
        NgSpiceError
            If ngspice printed an error or asked to be detached (the library is reloaded).
        """
        with self._lib.lock:
            with self._lib.captured() as lines:
                self._lib.command(cmd)
            self._after_exit(cmd, lines)
            _check(lines, cmd)
            return lines

    def load_circuit(self, netlist: Sequence[str] | str) -> None:
        """Replace the current circuit with ``netlist``.

        Parameters
        ----------
        netlist : sequence of str or str
            Netlist lines; the first line is the title (SPICE convention, it is never
            parsed as an element). ``.end`` is appended when missing: without it ngspice
            would keep buffering and glue the next netlist onto this one.

        Raises
        ------
        NgSpiceError
            If ngspice rejected the netlist; no circuit is loaded afterwards.
        """
        lines = _netlist_lines(netlist)
        with self._lib.lock:
            # A rejected netlist would leave the previous circuit current, and a later 'op'
            # would silently solve that one: so start from an empty circuit list.
            self._lib.clear_circuits()
            with self._lib.captured() as out:
                self._lib.circ(lines)
            self._after_exit("load circuit", out)
            try:
                _check(out, "load circuit")
            except NgSpiceError:
                self._lib.clear_circuits()  # some rejected netlists are kept, unusable
                raise

    def alter(self, device: str, value: float, parameter: str | None = None) -> None:
        """Change one instance parameter of the loaded circuit (``alter`` command).

        Parameters
        ----------
        device : str
            Instance name, e.g. ``'vin1'`` or ``'r3'``.
        value : float
            New value, passed at full double precision.
        parameter : str, optional
            Parameter name, e.g. ``'dc'`` for a source or ``'resistance'``; omitted, the
            instance's principal value is changed.

        Raises
        ------
        NgSpiceError
            If there is no such device or parameter.
        ValueError
            If ``value`` is not finite.
        """
        text = _format_value(value)
        if parameter is None:
            self.command(f"alter {device} {text}")
        else:
            self.command(f"alter {device} {parameter} = {text}")

    def run(self, analysis: str = "op") -> str:
        """Run an analysis on the loaded circuit and return the name of its plot.

        Parameters
        ----------
        analysis : str
            Analysis command line, e.g. ``'op'`` or ``'dc vin1 0 1 0.1'``.

        Returns
        -------
        str
            Name of the new current plot (e.g. ``'op1'``); destroy it with
            :meth:`destroy_plots` when done.

        Raises
        ------
        NgSpiceConvergenceError
            If no solution was found, or only the transient-op fallback found one and
            :attr:`allow_transient_op` is false; the plot is destroyed, the circuit stays.
        NgSpiceError
            If ngspice rejected the command (e.g. no circuit loaded).
        """
        with self._lib.lock:
            with self._lib.captured() as lines:
                self._lib.command(analysis)
            self._after_exit(analysis, lines)
            try:
                _check(lines, analysis, analysis=True, transient_op=self.allow_transient_op)
            except ConvergenceError:
                self.destroy_plots()  # holds zero-length vectors; reading them would mislead
                raise
            return self.current_plot()

    def current_plot(self) -> str:
        """Name of ngspice's current plot (``'const'`` when no analysis has run)."""
        with self._lib.lock:
            return (self._lib.cdll.ngSpice_CurPlot() or b"").decode()

    def plots(self) -> list[str]:
        """Names of all plots ngspice holds, newest first."""
        with self._lib.lock:
            return _c_strings(self._lib.cdll.ngSpice_AllPlots())

    def vector_names(self, plot: str | None = None) -> list[str]:
        """Names of the vectors in ``plot`` (default: the current plot)."""
        with self._lib.lock:
            name = plot if plot is not None else self.current_plot()
            with self._lib.captured(quiet=True):  # "no vectors" is normal for an empty plot
                return _c_strings(self._lib.cdll.ngSpice_AllVecs(name.encode()))

    def vector(self, name: str) -> np.ndarray:
        """Copy a vector of the current plot into numpy.

        Parameters
        ----------
        name : str
            Vector name as ngspice knows it: a node (``'out'``), a branch current
            (``'v1#branch'``) or ``'plot.name'`` for another plot.

        Returns
        -------
        numpy.ndarray
            float64 for real vectors, complex128 for complex ones; a copy, so it stays
            valid after the plot is destroyed.

        Raises
        ------
        NgSpiceError
            If there is no such vector.
        """
        with self._lib.lock:
            with self._lib.captured() as lines:
                info = self._lib.cdll.ngGet_Vec_Info(name.encode())
            if not info:
                raise NgSpiceError(f"ngspice has no vector {name!r}", name, lines)
            return _copy_vector(info.contents)

    def vectors(self, plot: str | None = None) -> dict[str, np.ndarray]:
        """All vectors of ``plot`` (default: the current plot), by name."""
        with self._lib.lock:
            name = plot if plot is not None else self.current_plot()
            return {vec: self.vector(f"{name}.{vec}") for vec in self.vector_names(name)}

    def destroy_plots(self) -> None:
        """Free every result plot ngspice holds (``destroy all``; 'const' stays)."""
        with self._lib.lock:
            with self._lib.captured(quiet=True):
                self._lib.command("destroy all")

    # -- high level -----------------------------------------------------------------------

    def run_op(self) -> dict[str, float]:
        """Solve the operating point of the loaded circuit, e.g. after :meth:`alter`.

        Returns
        -------
        dict[str, float]
            Node voltages by node name (lower case, e.g. ``'out'``) and branch currents of
            voltage sources and inductors (``'v1#branch'``, SPICE sign: positive current
            flows into the + terminal).

        Raises
        ------
        NgSpiceConvergenceError
            If ngspice found no operating point (see :meth:`run`); the circuit stays loaded.
        NgSpiceError
            If no circuit is loaded.
        """
        with self._lib.lock:
            plot = self.run("op")
            try:
                # The op plot is current, so plain names resolve to it; reading the one value
                # straight from ngspice's memory is ~10x faster than copying into numpy.
                return {
                    _result_key(name): self._lib.first_value(name)
                    for name in self.vector_names(plot)
                }
            finally:
                self.destroy_plots()

    def operating_point(self, netlist: Sequence[str] | str) -> dict[str, float]:
        """Load ``netlist`` and solve its operating point.

        The circuit stays loaded, so :meth:`alter` followed by :meth:`run_op` re-solves it
        without parsing the netlist again.

        Parameters
        ----------
        netlist : sequence of str or str
            Netlist, first line the title (see :meth:`load_circuit`).

        Returns
        -------
        dict[str, float]
            As :meth:`run_op`.
        """
        with self._lib.lock:
            self.load_circuit(netlist)
            return self.run_op()

    def reset(self) -> None:
        """Remove every loaded circuit and result plot, leaving ngspice empty."""
        with self._lib.lock:
            self._lib.clear_circuits()
            self.destroy_plots()

    def halt(self) -> None:
        """Stop a background analysis if one runs (``bg_halt``); a no-op otherwise.

        This binding runs everything in the caller's thread, so only commands a caller sent
        with ``bg_`` prefixes ever need halting.
        """
        with self._lib.lock:
            if self._lib.cdll.ngSpice_running():
                self.command("bg_halt")

    def reload(self) -> None:
        """Unload and reload the library: clears all ngspice state (options included)."""
        with self._lib.lock:
            self._lib.reload()

    # -- internals ------------------------------------------------------------------------

    def _after_exit(self, action: str, lines: list[str]) -> None:
        """Reload the library if ngspice asked to be detached during ``action``."""
        exit_info = self._lib.take_exit()
        if exit_info is None:
            return
        status, quit_ = exit_info
        with self._lib.captured(quiet=True):
            self._lib.reload()
        if not quit_:
            raise NgSpiceError(
                f"ngspice failed fatally on {action!r} (exit status {status}; library "
                f"reloaded): {_error_text(lines)}",
                action,
                lines,
            )


def _netlist_lines(netlist: Sequence[str] | str) -> list[str]:
    """Split a netlist into single lines and make sure it ends with ``.end``."""
    if isinstance(netlist, str):
        netlist = [netlist]
    lines = [part for line in netlist for part in line.splitlines()]
    if not lines:
        raise ValueError("empty netlist")
    if lines[-1].strip().lower() != ".end":
        lines.append(".end")
    return lines


def _result_key(vector_name: str) -> str:
    """Key of a result: ngspice names numeric nodes 'V(1)' and others plainly ('out')."""
    match = _NODE_RE.match(vector_name)
    return (match.group(1) if match else vector_name).lower()


def _copy_vector(info: _VectorInfo) -> np.ndarray:
    """Copy ngspice-owned vector data (it is freed when the plot is destroyed)."""
    length = max(int(info.v_length), 0)
    if info.v_flags & _VF_REAL:
        if length == 0 or not info.v_realdata:
            return np.empty(0)
        return np.ctypeslib.as_array(info.v_realdata, shape=(length,)).copy()
    if length == 0 or not info.v_compdata:
        return np.empty(0, dtype=complex)
    pairs = np.ctypeslib.as_array(info.v_compdata, shape=(length, 2))
    return pairs[:, 0] + 1j * pairs[:, 1]
