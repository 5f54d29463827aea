"""SimulatedBench: the Bench protocol on a simulated crossbar (native or SPICE engine).

The bench holds the device state (conductances, pulse counters) and an engine that settles
the circuit. Conductances change only through pulses; the trainer never writes them.
"""

from __future__ import annotations

import logging
from typing import Literal, Protocol

import numpy as np

from hil.bench import (
    Measurement,
    PulseCalibration,
    PulseReport,
    PulseRequest,
    SafetyLimits,
)
from hil.errors import ConfigError, SafetyError
from hil.network import Network
from simulators.circuit import Circuit
from simulators.native import NativeSolver, Solution

log = logging.getLogger(__name__)

EngineName = Literal["native", "spice"]


class Engine(Protocol):
    """What a bench needs from a circuit solver."""

    def solve(
        self,
        sources: np.ndarray,
        nudges: np.ndarray | None = None,
        initial: list[np.ndarray] | None = None,
    ) -> Solution: ...

    def update_conductances(self, device_ids: np.ndarray | None = None) -> None: ...


class FixedStepDevices:
    """Ideal devices: every pulse moves G by ``step`` in its direction, clipped to bounds.

    Parameters
    ----------
    conductances : ndarray, shape (n,)
        Starting conductances (S); updated in place.
    g_min, g_max : float
        Bounds (S).
    n_states : int
        Pulses that span the full range: ``step = (g_max - g_min) / n_states``.
    """

    def __init__(
        self, conductances: np.ndarray, g_min: float, g_max: float, n_states: int = 1000
    ) -> None:
        self.g = conductances
        self.g_min, self.g_max = g_min, g_max
        self.step = (g_max - g_min) / n_states

    def apply_pulses(
        self, device_ids: np.ndarray, counts: np.ndarray, amplitude_v: float, width_s: float
    ) -> np.ndarray:
        """Apply signed pulse counts; returns the pulses delivered (all of them)."""
        g = self.g[device_ids] + counts * self.step
        self.g[device_ids] = np.clip(g, self.g_min, self.g_max)
        return counts

    def calibration(self, amplitude_v: float, width_s: float) -> PulseCalibration:
        return PulseCalibration(self.step, self.step, amplitude_v, width_s)


def make_engine(name: EngineName, circuit: Circuit) -> Engine:
    """Build the named engine for a circuit."""
    if name == "native":
        return NativeSolver(circuit)
    if name == "spice":
        from simulators.spice.engine import SpiceEngine

        return SpiceEngine(circuit)
    raise ConfigError(f"engine must be 'native' or 'spice', got {name!r}")


class SimulatedBench:
    """A :class:`hil.bench.Bench` whose physics is a simulated circuit.

    Parameters
    ----------
    network : Network
    engine : ``"native"`` or ``"spice"``
    limits : SafetyLimits, optional
    seed : int
        Seeds the initial conductances.
    n_states : int
        Pulses over the full conductance range for the ideal device.
    pulse_amplitude_v, pulse_width_s : float
        The nominal programming pulse.
    """

    def __init__(
        self,
        network: Network,
        engine: EngineName = "native",
        limits: SafetyLimits | None = None,
        seed: int = 0,
        n_states: int = 1000,
        pulse_amplitude_v: float = 1.0,
        pulse_width_s: float = 1e-6,
    ) -> None:
        self.network = network
        self.limits = limits or SafetyLimits()
        rng = np.random.default_rng(seed)
        self._g = network.initial_conductances(rng)
        self.devices = FixedStepDevices(self._g, *network.g_bounds, n_states=n_states)
        self.calibration = self.devices.calibration(pulse_amplitude_v, pulse_width_s)
        self.pulse_counts = np.zeros(network.n_devices, dtype=np.int64)
        self.circuit = Circuit(network, self._g)
        self.engine_name = engine
        self.engine = make_engine(engine, self.circuit)
        self.applied_inputs = np.zeros(network.n_input_sources)
        self.applied_nudges = np.zeros(network.n_output_nodes)
        self._last: tuple[np.ndarray, Solution] | None = None

    # --- the four verbs -------------------------------------------------------------------
    def settle(self, inputs: np.ndarray, nudges: np.ndarray | None = None) -> Measurement:
        """Apply inputs (B, 2*inputs) V and nudges (B, 2*classes) A; measure equilibrium."""
        inputs = np.atleast_2d(np.asarray(inputs, dtype=float))
        net = self.network
        if inputs.shape[1] != net.n_input_sources:
            raise SafetyError(
                f"inputs must have shape (batch, {net.n_input_sources}), got {inputs.shape};"
                " nothing was applied"
            )
        if nudges is not None:
            nudges = np.atleast_2d(np.asarray(nudges, dtype=float))
            if nudges.shape != (len(inputs), net.n_output_nodes):
                raise SafetyError(
                    f"nudges must have shape ({len(inputs)}, {net.n_output_nodes}), got "
                    f"{nudges.shape}; nothing was applied"
                )
            self.limits.check_nudges(nudges)
        self.limits.check_inputs(inputs)
        self.applied_inputs, self.applied_nudges = (
            inputs[-1],
            (nudges[-1] if nudges is not None else np.zeros(net.n_output_nodes)),
        )
        sources = self.circuit.source_voltages(inputs)
        solution = self.engine.solve(sources, nudges, self._warm_start(inputs))
        self._last = (inputs, solution)
        return Measurement.from_voltages(net, self.circuit.node_voltages(sources, solution.layers))

    def _warm_start(self, inputs: np.ndarray) -> list[np.ndarray] | None:
        # Nudged phases re-settle the inputs of the free phase: start from its equilibrium.
        if self._last is not None and np.array_equal(self._last[0], inputs):
            return [v.copy() for v in self._last[1].layers]
        return None

    def pulse(self, request: PulseRequest) -> PulseReport:
        """Apply programming pulses after checking every limit; count every pulse."""
        request.check_devices(self.network.n_devices)
        self.limits.check_pulse(request)
        ids = np.asarray(request.device_ids)
        counts = np.asarray(request.counts)
        applied = self.devices.apply_pulses(ids, counts, request.amplitude_v, request.width_s)
        self.pulse_counts[ids] += np.abs(applied)
        self.engine.update_conductances(ids)
        self._last = None
        return PulseReport(ids, applied, np.abs(counts) - np.abs(applied))

    def read_conductances(self, device_ids: np.ndarray | None = None) -> np.ndarray:
        """Conductances (S) of the given devices (all by default)."""
        if device_ids is None:
            return self._g.copy()
        ids = np.asarray(device_ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.network.n_devices):
            raise SafetyError(f"device ids must be in [0, {self.network.n_devices})")
        return self._g[ids].copy()

    def safe_state(self) -> None:
        """All inputs to 0 V and nudges to 0 A."""
        self.applied_inputs = np.zeros(self.network.n_input_sources)
        self.applied_nudges = np.zeros(self.network.n_output_nodes)

    def close(self) -> None:
        self.safe_state()

    # --- device state ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Conductances and pulse counters, for checkpoints."""
        return {"conductances": self._g.copy(), "pulse_counts": self.pulse_counts.copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_dict` saved."""
        g = np.asarray(state["conductances"], dtype=float)
        if g.shape != self._g.shape:
            raise ConfigError(
                f"saved conductances have shape {g.shape}, this bench has {self._g.shape}"
            )
        self._g[:] = g
        self.pulse_counts[:] = state["pulse_counts"]
        self.engine.update_conductances()
        self._last = None

    def __enter__(self) -> SimulatedBench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
