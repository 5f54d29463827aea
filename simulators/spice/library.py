"""Loading ngspice's shared library (``libngspice.so.0``) once per process, through ctypes.

Process-global state
--------------------
ngspice keeps all its state (circuits, plots, options, the output callbacks) in C globals,
so one loaded copy of the library is one simulator per process. :func:`shared_library`
therefore loads each library path once per process, lazily, behind a lock; every
:class:`~simulators.spice.ngspice.NgSpice` made for the same path shares that one
:class:`NgSpiceLibrary` and its lock.

The one exception to "loaded once": when ngspice hits an error it cannot recover from
(e.g. an undefined ``{parameter}`` in a netlist) it calls the ControlledExit callback and
refuses all further circuits until the library is detached. :meth:`NgSpiceLibrary.reload`
then unloads the library (``dlclose``) and loads it afresh (options and variables set by
commands are lost with it).

Like the ngspice program, the library sources ``.spiceinit`` from the working directory or
the home directory when it is loaded; such a file can change simulator behaviour.

Memory
------
ngspice keeps a record of every command it runs and never frees it (0.1-0.4 kB each);
:meth:`NgSpiceLibrary.command` frees it after every command, so re-solving a circuit
millions of times does not grow the process.

A library that cannot be loaded raises :class:`~hil.errors.EngineUnavailable` naming the
Debian package ``libngspice0``.
"""

from __future__ import annotations

import _ctypes
import ctypes
import ctypes.util
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from hil.errors import EngineUnavailable
from simulators.spice.output import NgSpiceError, banner_version, log_line, strip_stream

_LOG = logging.getLogger("simulators.spice")

#: Soname of the library shipped by Debian's ``libngspice0`` package.
DEFAULT_LIBRARY = "libngspice.so.0"
#: Debian package that provides :data:`DEFAULT_LIBRARY`.
DEBIAN_PACKAGE = "libngspice0"
#: Environment variable that overrides the library path.
LIBRARY_ENV = "NGSPICE_LIBRARY"

_MAX_REMCIRC = 1000
_MAX_COMMAND_BYTES = 1023

_VF_REAL = 1  # vector flag: v_realdata is valid (else v_compdata)


class VectorInfo(ctypes.Structure):
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


class NgSpiceLibrary:
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
        self.version = banner_version(lines) or self.version

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
            _LOG.debug("ngspice: %s", strip_stream(line))
        else:
            log_line(line)
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
    cdll.ngGet_Vec_Info.restype = ctypes.POINTER(VectorInfo)
    cdll.ngSpice_CurPlot.argtypes = []
    cdll.ngSpice_CurPlot.restype = ctypes.c_char_p
    cdll.ngSpice_AllPlots.argtypes = []
    cdll.ngSpice_AllPlots.restype = ctypes.POINTER(ctypes.c_char_p)
    cdll.ngSpice_AllVecs.argtypes = [ctypes.c_char_p]
    cdll.ngSpice_AllVecs.restype = ctypes.POINTER(ctypes.c_char_p)


_LIBRARIES: dict[str, NgSpiceLibrary] = {}
_LIBRARIES_LOCK = threading.Lock()


def _resolve_path(library: str | os.PathLike[str] | None) -> str:
    """Pick the library path: argument, then $NGSPICE_LIBRARY, then the Debian soname."""
    if library is not None:
        return os.fspath(library)
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return env
    return DEFAULT_LIBRARY


def shared_library(library: str | os.PathLike[str] | None = None) -> NgSpiceLibrary:
    """Return the process-wide copy of the library, loading it on first use."""
    path = _resolve_path(library)
    with _LIBRARIES_LOCK:
        lib = _LIBRARIES.get(path)
        if lib is None:
            try:
                lib = NgSpiceLibrary(path)
            except EngineUnavailable:
                # Only the Debian soname may live elsewhere: ask ldconfig before giving up.
                found = ctypes.util.find_library("ngspice") if path == DEFAULT_LIBRARY else None
                if not found or found == path:
                    raise
                lib = NgSpiceLibrary(found)
            _LIBRARIES[path] = lib
        return lib


def c_strings(array: ctypes._Pointer | None) -> list[str]:
    """Decode a NULL-terminated ``char**`` owned by ngspice."""
    names: list[str] = []
    if not array:
        return names
    index = 0
    while array[index] is not None:
        names.append(array[index].decode())
        index += 1
    return names


def copy_vector(info: VectorInfo) -> np.ndarray:
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
