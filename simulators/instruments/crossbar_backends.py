"""Emulator physics: SMU and board backends that all share one simulated crossbar.

A :class:`CrossbarCircuit` holds one simulated bench (its public API only: ``settle``,
``pulse``, ``read_conductances``, ``network``) and the wiring of a lab config. Every emulated
instrument is attached to it through a thin backend:

- :class:`CrossbarBoardBackend` (a :class:`~simulators.instruments.board_server.BoardBackend`):
  DAC channels drive input and bias sources, ADC channels read hidden nodes, the board's
  ``(row, col)`` lines address the devices of the tiles placed on it;
- :class:`CrossbarSmuBackend` (a :class:`~simulators.instruments.smu_backends.SmuBackend`),
  served by a :class:`CrossbarSmuServer`: an SMU channel wired to an output node sources the
  nudge current and measures the node voltage; one wired to an input source sources its
  voltage and measures the current the network draws from it.

So what the drivers set is what the circuit sees, and what they read is what it settles to.
The circuit re-settles lazily: only when something is read after a source, a mode or a
conductance changed. Pulses are queued and applied to the physics in one request at the
next read or mode change (a simulated pulse costs a full conductance update), in the order
the board received them.

Notes
-----
What the simulated crossbar cannot represent is refused with :class:`EmulatorLimit` (the
board answers ``ERR 110``, an SMU queues error -300): an output node held by a voltage
source, an input driven by a current source, a bias DAC away from the network's bias
voltage while the network is connected, or pulses in another scheme than the physics'.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hil.bench import Measurement, PulseRequest, StatefulBench
from hil.config.lab import Wiring
from hil.errors import ConfigError
from hil.network import Network
from hil.vocabulary import BoardMode, PulseScheme, SourceMode
from simulators.instruments.smu_server import SmuServer

#: Largest distance (V) between a bias DAC and the network's bias voltage that still counts
#: as the bias being set.
BIAS_TOLERANCE_V = 1e-9


class Physics(Protocol):
    """The part of a simulated bench the emulators use."""

    network: Network

    def settle(self, inputs: np.ndarray, nudges: np.ndarray | None = None) -> Measurement:
        """Settle inputs (B, 2*inputs) V and nudges (B, 2*classes) A; measure the nodes."""
        ...

    def pulse(self, request: PulseRequest) -> object:
        """Apply programming pulses to devices of the network."""
        ...

    def read_conductances(self, device_ids: np.ndarray | None = None) -> np.ndarray:
        """Conductances (S) of the given devices (all when None)."""
        ...


class EmulatorLimit(RuntimeError):
    """The simulated crossbar cannot represent what the instruments were told to do."""


@dataclass
class BoardState:
    """What an emulated board drives (a snapshot).

    Attributes
    ----------
    mode : ``"idle"``, ``"network"`` or ``"programming"``
    dacs : ndarray, shape (n_dac,)
        DAC outputs (V).
    """

    mode: BoardMode
    dacs: np.ndarray


class CrossbarCircuit:
    """The one circuit every emulated instrument of a lab is wired to.

    Parameters
    ----------
    physics : Physics
        A simulated bench realising the network (e.g. :class:`simulators.bench.SimulatedBench`).
    wiring : Wiring
        The lab config's wiring resolved against ``physics.network``.
    scheme : ``"V/2"`` or ``"V/3"``
        The programming scheme the physics models; pulses in another scheme are refused.

    Attributes
    ----------
    settles : int
        Equilibria computed so far (cache misses).
    """

    def __init__(self, physics: Physics, wiring: Wiring, scheme: PulseScheme = "V/2") -> None:
        self.physics = physics
        self.network = physics.network
        self.wiring = wiring
        self.scheme = scheme
        self.settles = 0
        self.lock = threading.RLock()
        self._boards: dict[str, BoardState] = {}
        self._smus: dict[str, SmuServer] = {}
        net = self.network
        self._template = net.source_voltages_template
        self._bias_nodes = set(np.concatenate(net.bias_nodes).tolist()) if net.bias_nodes else set()
        self._adc: dict[str, dict[int, int]] = {}
        for node, ref in zip(net.hidden_nodes.tolist(), wiring.hidden, strict=True):
            self._adc.setdefault(ref.instrument, {})[ref.index] = node
        self._smu_sources = {  # board refs land here too; only SMU names are looked up
            (ref.instrument, ref.channel): node
            for node, ref in enumerate(wiring.sources)
            if ref is not None
        }
        self._smu_outputs = {
            (ref.instrument, ref.channel): k for k, ref in enumerate(wiring.outputs)
        }
        self._dac_nodes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._smu_driven: list[tuple[int, str, str]] = []  # (source node, SMU, channel)
        self._wired_bias = np.array(
            [n for n, r in enumerate(wiring.sources) if r is not None and n in self._bias_nodes],
            dtype=int,
        )
        self._tile_boards = {lines.board for lines in wiring.tiles}
        self._devices = {board: wiring.device_at(board) for board in self._tile_boards}
        rows = np.asarray(net.device_rows)
        self._source_devices = {node: np.flatnonzero(rows == node) for node in range(net.n_sources)}
        self._pending: dict[int, int] = {}
        self._pending_shape: tuple[float, float] | None = None
        self._generation = 0
        self._cache: tuple[tuple[bytes, bytes, int], np.ndarray | None] | None = None
        self._touched = True  # something may have changed since the cache was filled
        self._g_cache: tuple[int, np.ndarray] | None = None

    # --- attaching instruments -----------------------------------------------------------
    def attach_board(self, name: str, n_dac: int) -> CrossbarBoardBackend:
        """Register board ``name`` (``n_dac`` DAC channels) and return its backend."""
        wired = [
            (r.index, n) for n, r in enumerate(self.wiring.sources) if r and r.instrument == name
        ]
        with self.lock:
            self._boards[name] = BoardState("idle", np.zeros(n_dac))
            self._dac_nodes[name] = (
                np.array([c for c, _ in wired], dtype=int),
                np.array([n for _, n in wired], dtype=int),
            )
        return CrossbarBoardBackend(self, name)

    def attach_smu(self, name: str, server: SmuServer) -> None:
        """Register the server of SMU ``name``: its source settings drive the circuit."""
        wired = [
            (n, r.channel) for n, r in enumerate(self.wiring.sources) if r and r.instrument == name
        ]
        with self.lock:
            self._smus[name] = server
            self._smu_driven += [(node, name, channel) for node, channel in wired]

    def board_state(self, name: str) -> BoardState:
        """A snapshot of board ``name``'s mode and DAC outputs."""
        with self.lock:
            state = self._boards[name]
            return BoardState(state.mode, state.dacs.copy())

    # --- what drives the network ---------------------------------------------------------
    def _connected(self) -> bool:
        return all(self._boards[b].mode == "network" for b in self._tile_boards)

    def _drive(self) -> tuple[np.ndarray, np.ndarray]:
        """Source voltages (n_sources,) V and nudge currents (n_output_nodes,) A applied now."""
        sources = self._template.copy()
        for name, (channels, nodes) in self._dac_nodes.items():
            board = self._boards[name]
            sources[nodes] = board.dacs[channels] if board.mode == "network" else 0.0
        for node, inst, channel in self._smu_driven:
            state = self._smus[inst].smu.channels.get(channel)
            if state is None or not state.output_on:
                sources[node] = 0.0
            elif state.source_mode == "current":
                raise EmulatorLimit(
                    f"source node {node} is wired to {inst}:{channel}, which sources a current; "
                    "the simulated crossbar needs a voltage there"
                )
            else:
                sources[node] = state.voltage_level
        off = np.abs(sources[self._wired_bias] - self._template[self._wired_bias])
        if off.size and off.max() > BIAS_TOLERANCE_V:
            node = int(self._wired_bias[np.argmax(off)])
            raise EmulatorLimit(
                f"bias source node {node} ({self.wiring.sources[node]}) is at "
                f"{sources[node]:g} V; the simulated crossbar has its bias at "
                f"{self._template[node]:g} V: set the bias DACs before measuring"
            )
        levels = [0.0] * len(self.wiring.outputs)
        smus = self._smus
        for k, ref in enumerate(self.wiring.outputs):
            server = smus.get(ref.instrument)
            state = None if server is None else server.smu.channels.get(ref.channel)
            if state is None or not state.output_on:
                continue
            if state.source_mode == "voltage":
                raise EmulatorLimit(
                    f"output node {k} is wired to {ref}, which sources a voltage; the simulated "
                    "crossbar can only inject a current there"
                )
            levels[k] = state.current_level
        return sources, np.array(levels)

    def node_voltages(self) -> np.ndarray | None:
        """Every node's voltage (n_nodes,) V now, or None while the devices are isolated
        (a board carrying tiles is not in network mode)."""
        with self.lock:
            if not self._connected():
                return None
            self._flush()
            if not self._touched and self._cache is not None:
                return self._cache[1]
            self._touched = False  # before gathering: a change from now on marks it again
            try:
                sources, nudges = self._drive()
            except EmulatorLimit:
                self._touched = True
                raise
            key = (sources.tobytes(), nudges.tobytes(), self._generation)
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
            n_in = self.network.n_input_sources
            measured = self.physics.settle(
                sources[None, :n_in], nudges[None] if nudges.any() else None
            )
            self.settles += 1
            voltages = measured.node_voltages[0].copy()
            self._cache = (key, voltages)
            return voltages

    def _conductances(self) -> np.ndarray:
        self._flush()
        if self._g_cache is None or self._g_cache[0] != self._generation:
            self._g_cache = (self._generation, self.physics.read_conductances())
        return self._g_cache[1]

    def _source_current(self, node: int, voltages: np.ndarray) -> float:
        """Current (A) the network draws from source node ``node``."""
        devices = self._source_devices[node]
        drops = voltages[node] - voltages[self.network.device_cols[devices]]
        return float(np.sum(self._conductances()[devices] * drops))

    def touch(self) -> None:
        """Something an instrument drives may have changed: re-check before trusting the
        last equilibrium (called for every SMU message but pure TSP prints)."""
        self._touched = True

    # --- SMU side ------------------------------------------------------------------------
    def smu_measure(
        self,
        name: str,
        channel: str,
        source_mode: SourceMode,
        level: float,
        compliance: float,
        output_on: bool,
    ) -> tuple[float, float]:
        """(voltage [V], current [A]) at SMU ``name``'s ``channel`` (see SmuBackend)."""
        if not output_on:
            return 0.0, 0.0
        key = (name, channel)
        with self.lock:
            if key in self._smu_outputs:
                if source_mode == "voltage":
                    raise EmulatorLimit(f"{name}:{channel} drives an output node with a voltage")
                voltages = self.node_voltages()
                if voltages is None:  # devices isolated: the node is an open circuit
                    voltage = 0.0 if level == 0 else math.copysign(math.inf, level)
                else:
                    voltage = float(voltages[self.network.output_nodes[self._smu_outputs[key]]])
                return _clip(voltage, compliance), level
            if key in self._smu_sources:
                if source_mode == "current":
                    raise EmulatorLimit(f"{name}:{channel} drives a source node with a current")
                voltages = self.node_voltages()
                node = self._smu_sources[key]
                current = 0.0 if voltages is None else self._source_current(node, voltages)
                return level, _clip(current, compliance)
        # not wired to the network: open terminals
        if source_mode == "voltage":
            return level, 0.0
        return (0.0 if level == 0 else math.copysign(compliance, level)), level

    # --- board side ----------------------------------------------------------------------
    def set_dacs(self, board: str, values: dict[int, float]) -> None:
        """Drive DAC channels of ``board`` (V)."""
        with self.lock:
            dacs = self._boards[board].dacs
            for channel, value in values.items():
                dacs[channel] = value
            self._touched = True

    def read_adcs(self, board: str, channels: list[int]) -> list[float]:
        """Voltages (V) on ADC ``channels`` of ``board``; unwired channels read 0 V."""
        with self.lock:
            wired = self._adc.get(board, {})
            voltages = self.node_voltages()
            if voltages is None:
                return [0.0] * len(channels)
            return [float(voltages[wired[c]]) if c in wired else 0.0 for c in channels]

    def set_mode(self, board: str, mode: BoardMode) -> None:
        """Reconnect ``board``'s devices for ``mode`` (queued pulses are applied first)."""
        with self.lock:
            self._flush()
            self._boards[board].mode = mode
            self._touched = True

    def pulse(
        self,
        board: str,
        row: int,
        col: int,
        amplitude: float,
        width: float,
        count: int,
        scheme: PulseScheme,
    ) -> None:
        """Queue ``count`` pulses for the device at ``(row, col)``; none is there: nothing."""
        if scheme != self.scheme:
            raise EmulatorLimit(
                f"the simulated crossbar models the {self.scheme} scheme, not {scheme}"
            )
        with self.lock:
            device = self._devices.get(board, {}).get((row, col))
            if device is None or count == 0:
                return
            shape = (abs(float(amplitude)), float(width))
            if self._pending and (shape != self._pending_shape or device in self._pending):
                self._flush()
            self._pending[device] = int(math.copysign(count, amplitude))
            self._pending_shape = shape

    def read_device(self, board: str, row: int, col: int, v_read: float) -> float:
        """Current (A) through the device at ``(row, col)`` biased at ``v_read``; 0 if none."""
        with self.lock:
            device = self._devices.get(board, {}).get((row, col))
            if device is None:
                return 0.0
            self._flush()
            g = self.physics.read_conductances(np.array([device]))[0]
            return float(g * v_read)

    def read_block(
        self, board: str, row0: int, row1: int, col0: int, col1: int, v_read: float
    ) -> list[float]:
        """Currents (A) of the crosspoints of a block of ``board``'s lines (inclusive),
        row-major: those holding a device read in one request to the physics, in that
        order, the others 0."""
        with self.lock:
            devices = self._devices.get(board, {})
            cells = [(r, c) for r in range(row0, row1 + 1) for c in range(col0, col1 + 1)]
            found = [(k, devices[cell]) for k, cell in enumerate(cells) if cell in devices]
            currents = [0.0] * len(cells)
            if not found:
                return currents
            self._flush()
            g = self.physics.read_conductances(np.array([d for _, d in found], dtype=np.int64))
            for (k, _), value in zip(found, g.tolist(), strict=True):
                currents[k] = float(value * v_read)
            return currents

    def abort(self, board: str) -> None:
        """``board`` to its safe state: DACs at 0 V, idle."""
        with self.lock:
            self._flush()
            state = self._boards[board]
            state.dacs[:] = 0.0
            state.mode = "idle"
            self._touched = True

    # --- state for checkpoints -----------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """The physics' device state, queued pulses applied first (so none is lost).

        Raises
        ------
        ConfigError
            The physics cannot save its state (not a :class:`hil.bench.StatefulBench`).
        """
        with self.lock:
            physics = stateful(self.physics)
            self._flush()
            return physics.state_dict()

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore the physics from :meth:`state_dict` and forget everything derived from
        the devices before (queued pulses, the last equilibrium, cached conductances)."""
        with self.lock:
            stateful(self.physics).load_state_dict(dict(state))
            self._pending.clear()  # pulses for the devices the state replaces
            self._pending_shape = None
            self._generation += 1  # no cached equilibrium or conductance matches any more
            self._cache = None
            self._g_cache = None
            self._touched = True

    def _flush(self) -> None:
        """Apply the queued pulses to the physics in one request."""
        if not self._pending:
            return
        ids = np.fromiter(self._pending.keys(), dtype=np.int64)
        counts = np.fromiter(self._pending.values(), dtype=np.int64)
        assert self._pending_shape is not None
        amplitude, width = self._pending_shape
        self._pending.clear()
        self._generation += 1
        self._touched = True
        self.physics.pulse(PulseRequest(ids, counts, amplitude, width))


def stateful(physics: Physics) -> StatefulBench:
    """``physics`` as a bench whose device state can be saved (ConfigError if it cannot)."""
    if not isinstance(physics, StatefulBench):
        raise ConfigError(
            f"the emulated physics ({type(physics).__name__}) cannot save its devices"
        )
    return physics


def _clip(value: float, compliance: float) -> float:
    return value if abs(value) <= compliance else math.copysign(compliance, value)


class CrossbarBoardBackend:
    """A :class:`~simulators.instruments.board_server.BoardBackend` on a shared circuit."""

    def __init__(self, circuit: CrossbarCircuit, name: str) -> None:
        self.circuit = circuit
        self.name = name

    def set_dacs(self, values: dict[int, float]) -> None:
        """Drive this board's DAC channels (V) on the shared circuit."""
        self.circuit.set_dacs(self.name, values)

    def read_adcs(self, channels: list[int]) -> list[float]:
        """Read this board's ADC channels (V) from the shared circuit."""
        return self.circuit.read_adcs(self.name, channels)

    def set_mode(self, mode: BoardMode) -> None:
        """Put this board's devices in ``mode`` on the shared circuit."""
        self.circuit.set_mode(self.name, mode)

    def pulse(
        self, row: int, col: int, amplitude: float, width: float, count: int, scheme: PulseScheme
    ) -> None:
        """Queue pulses to the device on this board's line (row, col)."""
        self.circuit.pulse(self.name, row, col, amplitude, width, count, scheme)

    def read_device(self, row: int, col: int, v_read: float) -> float:
        """Current (A) through this board's device (row, col) at ``v_read`` (V)."""
        return self.circuit.read_device(self.name, row, col, v_read)

    def read_block(self, row0: int, row1: int, col0: int, col1: int, v_read: float) -> list[float]:
        """Currents (A) of a block of this board's crosspoints, row-major."""
        return self.circuit.read_block(self.name, row0, row1, col0, col1, v_read)

    def abort(self) -> None:
        """Return the board's DACs and lines to 0 V and isolate its devices."""
        self.circuit.abort(self.name)


_PURE_PRINT = re.compile(r"\s*print\([^=;]*\)\s*")


class CrossbarSmuServer(SmuServer):
    """An :class:`SmuServer` that tells its circuit when a message may change a source.

    Every message but a TSP chunk that only prints marks the circuit as touched, so reads
    that follow one another reuse the last equilibrium without re-gathering every source.
    """

    def __init__(self, model: str, circuit: CrossbarCircuit, name: str) -> None:
        super().__init__(model, CrossbarSmuBackend(circuit, name))
        self.circuit = circuit

    def execute(self, message: str) -> str | None:
        """Run one message; one that may change a source marks the circuit to re-settle."""
        if not _PURE_PRINT.fullmatch(message):
            self.circuit.touch()
        reply = super().execute(message)
        if not _PURE_PRINT.fullmatch(message):
            self.circuit.touch()
        return reply


class CrossbarSmuBackend:
    """A :class:`~simulators.instruments.smu_backends.SmuBackend` on a shared circuit."""

    def __init__(self, circuit: CrossbarCircuit, name: str) -> None:
        self.circuit = circuit
        self.name = name

    def measure(
        self,
        channel: str,
        source_mode: SourceMode,
        level: float,
        compliance: float,
        output_on: bool,
    ) -> tuple[float, float]:
        """(voltage [V], current [A]) of this SMU's ``channel`` on the shared circuit."""
        return self.circuit.smu_measure(
            self.name, channel, source_mode, level, compliance, output_on
        )
