"""The SPICE engine: a :class:`~simulators.circuit.Circuit` solved by ngspice, sample by sample.

The engine writes the circuit's netlist once (:mod:`simulators.spice.netlist`) and loads it
into ngspice's shared library. A settle of a batch then runs, for every sample: ``alter`` on
the input, bias and nudge sources whose value differs from what ngspice holds, one ``op``,
and a read of the free nodes' voltages. Conductances changed by pulses are pushed with
``alter`` on the changed resistors (or by reloading the netlist when most of them changed)
before the next operating point. The engine honours the same contract as
:class:`~simulators.native.NativeSolver` (the ``Engine`` protocol of
:mod:`simulators.bench`), so a :class:`~simulators.bench.SimulatedBench` runs on either.

ngspice holds one circuit per process. The engine holds the library's lock for a whole
batch, remembers process-wide which engine's circuit is loaded, and puts a marker node in
its netlist: an operating point whose results lack the marker was solved on someone else's
circuit, and the engine reloads its own and solves the sample again.

Errors
------
* ideal diodes: :class:`~hil.errors.ConfigError` at construction (no SPICE counterpart);
* no library: :class:`~hil.errors.EngineUnavailable` at construction, naming ``libngspice0``;
* a netlist or command ngspice rejects: :class:`~hil.errors.SimulationError` with ngspice's
  own words;
* no operating point for a sample: :class:`~hil.errors.ConvergenceError` naming the sample.

After an error the engine forgets what ngspice holds and reloads its netlist on the next
solve, so one failed sample or one rejected netlist does not break the bench.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading

import numpy as np

from hil.errors import ConvergenceError, SimulationError
from simulators.circuit import Circuit
from simulators.native import Solution
from simulators.spice.netlist import Netlist, check_diodes, resistance, write_netlist
from simulators.spice.ngspice import NgSpice
from simulators.spice.output import NgSpiceConvergenceError, NgSpiceError

log = logging.getLogger(__name__)

# Which engine's circuit each loaded copy of the library holds (keyed by its shared lock).
_LOADED: dict[threading.RLock, int] = {}
_SERIALS = itertools.count(1)


class SpiceEngine:
    """DC operating points of a circuit computed by ngspice.

    Parameters
    ----------
    circuit : Circuit
        The network (Shockley diodes) and its conductances in siemens; the array is read at
        every solve, so pulses applied to it in place are seen (after
        :meth:`update_conductances`, or at the latest by the next solve).
    library : str or os.PathLike, optional
        The ngspice shared library (default: ``$NGSPICE_LIBRARY`` or ``libngspice.so.0``).
    options : str
        Extra ngspice options (``name=value ...``) appended to the netlist's ``.options``
        line, e.g. iteration limits. Setting :attr:`options` later reloads the netlist on
        the next solve.
    reload_fraction : float
        When more than this fraction of the devices changed since the last solve, the
        netlist is reloaded instead of altering each resistor (cheaper for many changes).

    Raises
    ------
    ConfigError
        If the network's diodes are ideal: a hard clamp has no SPICE counterpart.
    EngineUnavailable
        If ngspice's shared library cannot be loaded (names the package ``libngspice0``).

    Notes
    -----
    ngspice does not report its Newton iterations through the shared library, so
    :attr:`Solution.iterations` is 0. :attr:`Solution.residual` is the largest current
    imbalance at any free node, recomputed from the returned voltages with
    :meth:`Circuit.kcl_residual`. The ``initial`` warm start of :meth:`solve` is ignored:
    every ``op`` starts from ngspice's own initial guess.
    """

    def __init__(
        self,
        circuit: Circuit,
        library: str | os.PathLike[str] | None = None,
        options: str = "",
        reload_fraction: float = 0.5,
    ) -> None:
        check_diodes(circuit.network.spec.diode)
        self.circuit = circuit
        self.reload_fraction = reload_fraction
        self.ngspice = NgSpice(library)
        self._options = options
        self._serial = next(_SERIALS)
        self._marker = f"mark{self._serial}"
        self._netlist: Netlist | None = None
        # What the loaded circuit holds: source voltages (V), nudges (A), conductances (S).
        self._held_sources = np.zeros(0)
        self._held_nudges = np.zeros(0)
        self._held_g = np.zeros(0)

    @property
    def options(self) -> str:
        """Extra ngspice options of the netlist (``name=value ...``)."""
        return self._options

    @options.setter
    def options(self, value: str) -> None:
        with self.ngspice.lock:
            self._options = value
            self._forget()
            self._netlist = None  # written afresh with the new options

    # --- the Engine protocol ----------------------------------------------------------------
    def solve(
        self,
        sources: np.ndarray,
        nudges: np.ndarray | None = None,
        initial: list[np.ndarray] | None = None,
    ) -> Solution:
        """Settle a batch, one ngspice operating point per sample.

        Parameters
        ----------
        sources : ndarray, shape (B, n_sources)
            Voltages of every source node (inputs and biases), V.
        nudges : ndarray, shape (B, n_output_nodes), optional
            Currents injected into the output nodes, A (zero if omitted).
        initial : list of ndarray, optional
            Ignored (ngspice starts every operating point from its own guess).

        Returns
        -------
        Solution
            ``layers``: voltages of every free layer, each (B, n_t), V.

        Raises
        ------
        ConvergenceError
            If ngspice finds no operating point for a sample (the message names it).
        SimulationError
            If ngspice rejects the netlist or a command.
        """
        net = self.circuit.network
        sources = np.asarray(sources, dtype=float)
        batch = len(sources)
        if sources.shape != (batch, net.n_sources):
            raise ValueError(f"sources must have shape (B, {net.n_sources}), got {sources.shape}")
        if nudges is None:
            nudges = np.zeros((batch, net.n_output_nodes))
        nudges = np.asarray(nudges, dtype=float)
        if nudges.shape != (batch, net.n_output_nodes):
            raise ValueError(
                f"nudges must have shape ({batch}, {net.n_output_nodes}), got {nudges.shape}"
            )
        layers = [np.empty((batch, len(layer.nodes))) for layer in net.layers]
        with self.ngspice.lock:
            for b in range(batch):
                values = self._solve_sample(b, sources[b], nudges[b])
                for t, names in enumerate(self._names().layers):
                    layers[t][b] = [values[name] for name in names]
        node_voltages = self.circuit.node_voltages(sources, layers)
        residual = np.abs(self.circuit.kcl_residual(node_voltages, nudges))
        return Solution(layers, 0, float(residual.max(initial=0.0)))

    def update_conductances(self, device_ids: np.ndarray | None = None) -> None:
        """Push changed conductances (all, or ``device_ids``) into the loaded circuit.

        Resistors whose conductance differs from what ngspice holds are altered to
        ``1 / G`` ohms. If this engine's circuit is not loaded right now nothing is sent:
        the next solve loads it with the present conductances. If ngspice refuses the
        change, the next solve reloads the netlist instead (and reports any error). Every
        solve also compares all conductances, so a change that was not announced is still
        pushed in time.
        """
        with self.ngspice.lock:
            if not self._is_loaded():
                return
            try:
                self._push_conductances(device_ids)
            except SimulationError as exc:
                # The devices did change; only ngspice's copy is behind. The next solve
                # loads the netlist afresh with the present conductances (or says why not).
                self._forget()
                log.info("could not push conductances into ngspice (%s); reloading later", exc)

    # --- state of the loaded circuit --------------------------------------------------------
    def _names(self) -> Netlist:
        assert self._netlist is not None
        return self._netlist

    def _is_loaded(self) -> bool:
        return self._netlist is not None and _LOADED.get(self.ngspice.lock) == self._serial

    def _forget(self) -> None:
        """Assume nothing about what ngspice holds: the next solve reloads the netlist."""
        if _LOADED.get(self.ngspice.lock) == self._serial:
            del _LOADED[self.ngspice.lock]

    def _load(self) -> None:
        """Load the netlist with the present conductances into ngspice."""
        net = self.circuit.network
        if self._netlist is None:
            netlist = write_netlist(self.circuit, options=self.options, marker=self._marker)
            lines = netlist.lines
        else:  # same circuit, other conductances: only the resistor values change
            netlist = self._netlist
            lines = netlist.render(self.circuit.conductances)
        self._forget()
        try:
            self.ngspice.load_circuit(lines)
        except NgSpiceError as exc:
            raise SimulationError(
                f"ngspice rejected the netlist of the {net.describe()}: {exc}"
            ) from exc
        _LOADED[self.ngspice.lock] = self._serial
        self._netlist = netlist
        self._held_sources = net.source_voltages_template.copy()  # inputs at 0 V
        self._held_nudges = np.zeros(net.n_output_nodes)
        self._held_g = self.circuit.conductances.copy()
        log.debug("loaded the %s into ngspice (%d lines)", net.describe(), len(lines))

    def _push_conductances(self, device_ids: np.ndarray | None = None) -> None:
        g = self.circuit.conductances
        ids = np.arange(len(g)) if device_ids is None else np.unique(np.asarray(device_ids))
        changed = ids[g[ids] != self._held_g[ids]]
        if not changed.size:
            return
        if changed.size > self.reload_fraction * len(g):
            self._load()
            return
        names = self._names().resistors
        for device in changed:
            value = float(g[device])
            self.ngspice.alter(names[device], resistance(value))
            self._held_g[device] = value

    def _alter_sources(self, names: list[str], held: np.ndarray, values: np.ndarray) -> None:
        for k in np.flatnonzero(values != held):
            self.ngspice.alter(names[k], float(values[k]), "dc")
            held[k] = values[k]

    def _solve_sample(self, b: int, sources: np.ndarray, nudges: np.ndarray) -> dict[str, float]:
        """Operating point of one sample: ngspice's results by node name."""
        for attempt in range(2):
            fresh = not self._is_loaded()
            try:
                if fresh:
                    self._load()
                else:
                    self._push_conductances()
                names = self._names()
                self._alter_sources(names.sources, self._held_sources, sources)
                self._alter_sources(names.nudges, self._held_nudges, nudges)
                values = self.ngspice.run_op()
            except NgSpiceConvergenceError as exc:
                self._forget()
                raise ConvergenceError(
                    f"ngspice found no operating point for sample {b} of the batch: {exc}"
                ) from exc
            except NgSpiceError as exc:
                self._forget()
                if fresh or attempt:
                    raise SimulationError(f"ngspice failed on sample {b}: {exc}") from exc
                # Someone else may have replaced or cleared the circuit: load ours again.
                log.info("ngspice lost this engine's circuit (%s); reloading", exc)
                continue
            except BaseException:
                self._forget()
                raise
            if self._marker in values:
                return values
            self._forget()
            log.info("ngspice held another circuit than this engine's; reloading")
        raise SimulationError(
            f"ngspice did not solve this engine's circuit for sample {b} even after reloading it"
        )
