"""An ngspice session: netlists, commands and operating points through the shared library.

:class:`NgSpice` runs netlists and commands in the caller's thread (no background thread)
and reads the vectors of the result plots into numpy. It is a handle on the one copy of the
library a process holds (:mod:`simulators.spice.library`): an :class:`NgSpice` may be used
from any thread, but only one thread at a time gets into ngspice, since every call holds the
library's lock; a sequence of calls that must not be interleaved with another thread's
(load, alter, op, read) should hold :attr:`NgSpice.lock` around it.

When ngspice fails fatally (it asks to be detached), the session reloads the library, so
the caller gets an :class:`~simulators.spice.output.NgSpiceError` and the next circuit runs
normally. Result plots are destroyed after reading and at most one circuit is kept. What
ngspice prints is checked for errors by :mod:`simulators.spice.output`.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Sequence

import numpy as np

from hil.errors import ConvergenceError
from simulators.spice.library import c_strings, copy_vector, shared_library
from simulators.spice.output import NgSpiceError, check_output, error_text

_NODE_RE = re.compile(r"^v\((.*)\)$", re.IGNORECASE)


def _format_value(value: float) -> str:
    """Shortest text that parses back to exactly ``value`` (so alter loses no precision)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot pass a non-finite value to ngspice: {value!r}")
    return repr(value)


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
        self._lib = shared_library(library)
        self.allow_transient_op = allow_transient_op

    # -- properties -----------------------------------------------------------------------

    @property
    def lock(self) -> threading.RLock:
        """Re-entrant lock shared by every user of this library copy; hold it across calls
        that must not interleave with another thread's (e.g. alter, op, read)."""
        return self._lib.lock

    @property
    def version(self) -> str:
        """The ngspice version from the library's start-up banner (e.g. ``'39'``)."""
        return self._lib.version

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
            check_output(lines, cmd)
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
                check_output(out, "load circuit")
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
                check_output(lines, analysis, analysis=True, transient_op=self.allow_transient_op)
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
            return c_strings(self._lib.cdll.ngSpice_AllPlots())

    def vector_names(self, plot: str | None = None) -> list[str]:
        """Names of the vectors in ``plot`` (default: the current plot)."""
        with self._lib.lock:
            name = plot if plot is not None else self.current_plot()
            with self._lib.captured(quiet=True):  # "no vectors" is normal for an empty plot
                return c_strings(self._lib.cdll.ngSpice_AllVecs(name.encode()))

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
            return copy_vector(info.contents)

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
                f"reloaded): {error_text(lines)}",
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
