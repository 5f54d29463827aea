"""SimulatedBench: the Bench protocol on a simulated crossbar (native or SPICE engine).

The bench holds the device state (a :class:`~simulators.devices.DeviceArray` of one device
model: conductances, per-device variation, pulse and disturb counters), the converters its
measurements pass through, and an engine that settles the circuit. Conductances change only
through pulses; the trainer never writes them.

Programming pulses go through a crossbar scheme (``"V/2"`` or ``"V/3"``, see
:mod:`simulators.crossbar_scheme`): the selected device of tile ``t`` at ``(row, col)`` sees
the full pulse, the half-selected devices of the same tile (same row or same column) see a
fraction of it and are disturbed as the device model's pulse law says (nothing moves at or
below the switching threshold). Under V/3 the unselected devices of the tile see a third of
the pulse with the opposite polarity. Devices of other tiles see nothing. Within one request
the order of pulses is not modelled: the selected pulses are applied, then the exposures.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, get_args

import numpy as np
from pydantic import ValidationError

from hil import kernels
from hil.bench import (
    Measurement,
    PulseCalibration,
    PulseReport,
    PulseRequest,
    SafeStateReport,
    SafetyLimits,
    check_device_ids,
    check_settle_args,
)
from hil.errors import ConfigError, InstrumentError
from hil.network import Network, Tile
from hil.vocabulary import (
    MEASURED_PRESETS,
    DevicePreset,
    EngineName,
    FlaggedSamples,
    PulseScheme,
)
from simulators.circuit import Circuit
from simulators.converters import Converters
from simulators.crossbar_scheme import check_scheme, disturb_exposure, exposure_totals
from simulators.devices import DeviceArray, DeviceModel, MeasuredModel, preset
from simulators.devices.presets import ENODE_FILES, TAOX_FILES, ideal
from simulators.native import NativeSolver, Solution

log = logging.getLogger(__name__)

#: Smallest width of a device's own range, as a fraction of the network's (see DeviceArray).
MIN_DEVICE_SPAN = 0.01


class Engine(Protocol):
    """What a bench needs from a circuit solver."""

    def solve(
        self,
        sources: np.ndarray,
        nudges: np.ndarray | None = None,
        initial: list[np.ndarray] | None = None,
    ) -> Solution:
        """Settle a batch: source voltages (B, n_sources) V, output nudges (B, n_out) A,
        optionally from an initial guess of every layer's node voltages."""
        ...

    def update_conductances(self, device_ids: np.ndarray | None = None) -> None:
        """Take the circuit's new conductances of these devices (all when None)."""
        ...


def make_engine(name: EngineName, circuit: Circuit) -> Engine:
    """Build the named engine for a circuit."""
    if name == "native":
        return NativeSolver(circuit)
    if name == "spice":
        from simulators.spice.engine import SpiceEngine

        return SpiceEngine(circuit)
    raise ConfigError(f"engine must be 'native' or 'spice', got {name!r}")


def ideal_device(g_bounds: tuple[float, float], n_states: int = 1000) -> DeviceModel:
    """The ideal preset with ``n_states`` constant steps over ``g_bounds`` (S)."""
    g_min, g_max = g_bounds
    step = (g_max - g_min) / n_states
    return ideal(g_min, g_max).replace(step_up=step, step_down=step)


def build_device_model(
    name: DevicePreset,
    g_bounds: tuple[float, float],
    *,
    n_states: int = 1000,
    data_dir: str | Path | None = None,
    file_increasing: str | Path | None = None,
    file_decreasing: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> DeviceModel:
    """A device model from a preset name, mapped onto the network's range.

    Parameters
    ----------
    name : DevicePreset
        A preset of :data:`simulators.devices.PRESETS` (``ideal``, ``reram``, ``ecram``,
        ``taox_measured``, ``enode_measured``) or ``measured`` for any pair of tables.
    g_bounds : (float, float)
        The network's ``(g_min, g_max)`` (S); the model is rescaled onto it.
    n_states : int
        Pulses over the range of the ``ideal`` preset (ignored by the others).
    data_dir : path, optional
        Folder of Sandia's tables (``taox_measured``, ``enode_measured``).
    file_increasing, file_decreasing : path, optional
        The two tables of a ``measured`` device (CrossSim format).
    overrides : mapping, optional
        Model fields to change after the preset is built, merged into nested fields
        (``{"endurance": 10**6, "variability": {"c2c": 2.0}}`` keeps the other
        variability fields). ``g_min``/``g_max`` cannot be overridden: they are the
        network's.

    Raises
    ------
    ConfigError
        Unknown preset, missing tables, or overrides the model does not accept.
    """
    g_min, g_max = g_bounds
    if name == "ideal":
        model = ideal_device(g_bounds, n_states)
    elif name == "measured":
        if file_increasing is None or file_decreasing is None:
            raise ConfigError("a 'measured' device needs file_increasing and file_decreasing")
        model = MeasuredModel(
            file_increasing=Path(file_increasing), file_decreasing=Path(file_decreasing)
        )
    elif name in MEASURED_PRESETS:
        if data_dir is None:
            files = TAOX_FILES if name == "taox_measured" else ENODE_FILES
            raise ConfigError(f"the {name!r} device needs data_dir, the folder of {files}")
        model = preset(name, data_dir=data_dir)
    else:
        model = preset(name, g_min=g_min, g_max=g_max)
    if overrides:
        if {"g_min", "g_max"} & set(overrides):
            raise ConfigError(
                "device overrides cannot set g_min/g_max: devices are mapped onto the "
                "network's [g_min, g_max]"
            )
        data = _merge(model.model_dump(), dict(overrides))
        try:
            model = type(model).model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid device overrides for {name!r}: {exc}") from None
    if model.bounds() != (float(g_min), float(g_max)):
        model = model.rescaled(g_min, g_max)
    return model


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], dict(value))
        else:
            out[key] = value
    return out


class SimulatedBench:
    """A :class:`hil.bench.Bench` whose physics is a simulated circuit of modelled devices.

    Parameters
    ----------
    network : Network
    engine : ``"native"`` or ``"spice"``
    limits : SafetyLimits, optional
    seed : int
        Seeds the initial conductances, the per-device variation, the pulse, read and ADC
        noise.
    n_states : int
        Pulses over the full conductance range of the default (ideal) device; ignored when
        ``device`` is given.
    pulse_amplitude_v, pulse_width_s : float, optional
        The nominal programming pulse (V, s) the calibration refers to; default: the device
        model's nominal pulse.
    device : DeviceModel, optional
        The device model; rescaled onto the network's ``[g_min, g_max]`` when its range
        differs. Default: the ideal preset with ``n_states`` steps.
    scheme : ``"V/2"`` or ``"V/3"``
        How the crossbar addresses a device for programming (module docstring).
    converters : Converters, optional
        DAC on the inputs, ADC and noise on the measured voltages; default ideal.
    clip_device_bounds : bool
        Clip every device's own bounds into the network's ``[g_min, g_max]`` (device-to-device
        bound spread otherwise lets some devices leave the range the network specifies).
    flagged_samples : ``"record"`` or ``"raise"``
        What a settle does when the ADC overflows: ``record`` it in the Measurement's
        ``overflow`` array, or ``raise`` an :class:`~hil.errors.InstrumentError` naming the
        nodes. (``compliance`` is always all False: the simulation has no compliance model.)

    Attributes
    ----------
    devices : DeviceArray
        The state of every device (by device id).
    calibration : PulseCalibration
        Mean step of the nominal pulse at mid-range of a nominal device.
    """

    def __init__(
        self,
        network: Network,
        engine: EngineName = "native",
        limits: SafetyLimits | None = None,
        seed: int = 0,
        n_states: int = 1000,
        pulse_amplitude_v: float | None = None,
        pulse_width_s: float | None = None,
        device: DeviceModel | None = None,
        scheme: PulseScheme = "V/2",
        converters: Converters | None = None,
        clip_device_bounds: bool = True,
        flagged_samples: FlaggedSamples = "record",
    ) -> None:
        check_scheme(scheme)
        if flagged_samples not in get_args(FlaggedSamples):
            raise ConfigError(
                f"flagged_samples must be one of {', '.join(get_args(FlaggedSamples))}, got "
                f"{flagged_samples!r}"
            )
        self.network = network
        self.limits = limits or SafetyLimits()
        self.scheme: PulseScheme = scheme
        self.flagged_samples: FlaggedSamples = flagged_samples
        g_min, g_max = network.g_bounds
        model = ideal_device(network.g_bounds, n_states) if device is None else device
        if model.bounds() != (float(g_min), float(g_max)):
            model = model.rescaled(g_min, g_max)
        rng = np.random.default_rng(seed)
        g0 = network.initial_conductances(rng)
        device_rng, converter_rng = rng.spawn(2)
        self.devices = DeviceArray(model, network.n_devices, seed=device_rng, g_init=g0)
        if clip_device_bounds:
            self._clip_bounds(g0)
        self.converters = converters or Converters(seed=converter_rng)
        self.calibration = self._calibrate(
            model.pulse.v_nominal if pulse_amplitude_v is None else pulse_amplitude_v,
            model.pulse.width_nominal if pulse_width_s is None else pulse_width_s,
        )
        self._g = self.devices.conductances
        self.circuit = Circuit(network, self._g)
        self.engine_name = engine
        self.engine = make_engine(engine, self.circuit)
        self._tile_first = np.array([t.first_device for t in network.tiles])
        self.applied_inputs = np.zeros(network.n_input_sources)
        self.applied_nudges = np.zeros(network.n_output_nodes)
        self._last: tuple[np.ndarray, Solution] | None = None

    def _clip_bounds(self, g0: np.ndarray) -> None:
        g_min, g_max = self.network.g_bounds
        span = MIN_DEVICE_SPAN * (g_max - g_min)
        state = self.devices.state_dict()
        lo = np.clip(state["lo"], g_min, g_max - span)
        hi = np.clip(state["hi"], lo + span, g_max)
        if np.array_equal(lo, state["lo"]) and np.array_equal(hi, state["hi"]):
            return
        state["lo"], state["hi"] = lo, hi
        self.devices.load_state_dict(state)
        self.devices.set_conductance(np.arange(self.devices.n_devices), g0)

    def _calibrate(self, amplitude_v: float, width_s: float) -> PulseCalibration:
        lo, hi = self.limits.pulse_amplitude
        if not lo <= amplitude_v <= hi:
            raise ConfigError(
                f"pulse_amplitude_v {amplitude_v:g} V is outside the bench's pulse_amplitude "
                f"limits [{lo:g}, {hi:g}] V"
            )
        lo, hi = self.limits.pulse_width
        if not lo <= width_s <= hi:
            raise ConfigError(
                f"pulse_width_s {width_s:g} s is outside the bench's pulse_width limits "
                f"[{lo:g}, {hi:g}] s"
            )
        model = self.devices.model
        gain = float(model.pulse.gain(amplitude_v, width_s))
        if gain <= 0:
            raise ConfigError(
                f"pulse_amplitude_v {amplitude_v:g} V does not exceed the device's switching "
                f"threshold ({model.pulse.v_threshold:g} V): such pulses move nothing"
            )
        return PulseCalibration(
            model.nominal_step(1) * gain, model.nominal_step(-1) * gain, amplitude_v, width_s
        )

    # --- read-only views ------------------------------------------------------------------
    @property
    def device_model(self) -> DeviceModel:
        """The device model every device of the bench follows."""
        return self.devices.model

    @property
    def pulse_counts(self) -> np.ndarray:
        """Selected pulses delivered to every device so far, shape (n_devices,)."""
        return self.devices.pulse_count

    @property
    def disturb_counts(self) -> np.ndarray:
        """Half-select exposures every device received so far, shape (n_devices,)."""
        return self.devices.disturb_count

    @property
    def exhausted(self) -> np.ndarray:
        """Ids of the devices at their endurance limit, shape (m,)."""
        return np.flatnonzero(self.devices.exhausted)

    # --- the four verbs -------------------------------------------------------------------
    def settle(self, inputs: np.ndarray, nudges: np.ndarray | None = None) -> Measurement:
        """Apply inputs (B, 2*inputs) V and nudges (B, 2*classes) A; measure equilibrium.

        The inputs pass through the DAC, the measured node voltages through the ADC; the
        Measurement's ``overflow`` marks the readings that saturated the ADC.

        Raises
        ------
        SafetyError
            If the arguments are not of shape (B, 2*inputs) and (B, 2*classes) or exceed
            the limits (:func:`hil.bench.check_settle_args`); nothing was applied.
        InstrumentError
            With ``flagged_samples="raise"``, if any reading overflowed the ADC (after the
            settle: the inputs were applied).
        """
        net = self.network
        inputs, nudges_a = check_settle_args(net, self.limits, inputs, nudges)
        driven = self.converters.drive(inputs)
        self.applied_inputs, self.applied_nudges = driven[-1], nudges_a[-1]
        sources = self.circuit.source_voltages(driven)
        # The engines take None for the free phase (no nudge sources to stamp).
        solution = self.engine.solve(
            sources, None if nudges is None else nudges_a, self._warm_start(driven)
        )
        self._last = (driven, solution)
        voltages, overflow = self.converters.measure(
            self.circuit.node_voltages(sources, solution.layers)
        )
        if self.flagged_samples == "raise" and overflow.any():
            raise InstrumentError("ADC", "settle", self._overflow_reason(overflow))
        return Measurement.from_voltages(net, voltages, overflow=overflow)

    def _overflow_reason(self, overflow: np.ndarray) -> str:
        samples, nodes = np.nonzero(overflow)
        shown = ", ".join(str(n) for n in np.unique(nodes)[:10])
        more = " ..." if np.unique(nodes).size > 10 else ""
        return (
            f"{samples.size} node voltage(s) outside the ADC full scale of "
            f"±{self.converters.adc_full_scale_v:g} V (nodes {shown}{more}; "
            f"{np.unique(samples).size} of {len(overflow)} samples); widen "
            "converters.adc_full_scale_v or lower the inputs, or set flagged_samples: record "
            "to get the flags in the Measurement instead"
        )

    def _warm_start(self, inputs: np.ndarray) -> list[np.ndarray] | None:
        # Nudged phases re-settle the inputs of the free phase: start from its equilibrium.
        if self._last is not None and np.array_equal(self._last[0], inputs):
            return [v.copy() for v in self._last[1].layers]
        return None

    def pulse(self, request: PulseRequest) -> PulseReport:
        """Apply programming pulses through the crossbar scheme; count every pulse.

        Every limit (bench and device) is checked before anything is applied. Pulses beyond
        a device's endurance are refused: ``refused`` counts them and ``notes`` names the
        devices. Half-selected devices are disturbed per the device model (module
        docstring); ``notes`` says how many moved.
        """
        request.check_devices(self.network.n_devices)
        self.limits.check_pulse(request)
        self.device_model.pulse.gain(request.amplitude_v, request.width_s)  # device v_max
        ids = np.asarray(request.device_ids, dtype=np.int64)
        counts = np.asarray(request.counts, dtype=np.int64)
        notes: list[str] = []
        outcome = self.devices.apply_pulses(ids, counts, request.amplitude_v, request.width_s)
        if outcome.any_refused:
            notes.append(self._endurance_note(outcome.refused_devices, outcome.refused))
        moved = self._disturb(ids, outcome.applied, request.amplitude_v, request.width_s)
        if moved:
            notes.append(
                f"{self.scheme} scheme: {moved} half-selected device(s) moved by disturb at "
                f"{request.amplitude_v:g} V"
            )
            self._sync_conductances()
        else:
            # only the selected devices can have moved: compare those, not every device
            self._sync_conductances(ids, outcome.g_after)
        return PulseReport(ids, outcome.applied, outcome.refused, notes)

    def _sync_conductances(
        self, candidates: np.ndarray | None = None, values: np.ndarray | None = None
    ) -> None:
        """Copy the devices' conductances into the circuit; tell the engine which changed.

        ``candidates`` (distinct ids) and their present conductances ``values`` (S) limit
        the comparison to the devices that can have changed; all devices by default.
        """
        if candidates is None or values is None:
            new = self.devices.conductances
            changed = np.flatnonzero(new != self._g)
            self._g[changed] = new[changed]
        elif kernels.active(candidates.size):  # the same writes in one compiled pass
            changed = kernels.copy_changed(self._g, candidates, values)
        else:
            differs = values != self._g[candidates]
            changed = candidates[differs]
            self._g[changed] = values[differs]
        self.engine.update_conductances(changed)
        self._last = None

    def _endurance_note(self, devices: np.ndarray, refused: np.ndarray) -> str:
        shown = ", ".join(str(d) for d in devices[:10]) + (" ..." if devices.size > 10 else "")
        return (
            f"endurance limit of {self.device_model.endurance} pulses reached: "
            f"{int(refused.sum())} pulse(s) refused to {devices.size} device(s) ({shown})"
        )

    def _disturb(
        self, ids: np.ndarray, applied: np.ndarray, amplitude_v: float, width_s: float
    ) -> int:
        """Expose the half-selected devices of every tile pulsed; returns how many moved."""
        moved = 0
        live = applied != 0
        if not live.all():  # (an open-loop plan pulses only devices with a count)
            ids, applied = ids[live], applied[live]
        if not ids.size:
            return 0
        fraction = 2.0 if self.scheme == "V/2" else 3.0
        # Below threshold (every preset at its nominal pulse under V/2) no exposure moves a
        # device: count them in line form instead of exposing every device one by one.
        idle = not np.any(self.device_model.pulse.gain(float(amplitude_v) / fraction, width_s))
        compiled = idle and self.scheme == "V/2" and amplitude_v > 0 and kernels.active(ids.size)
        for tile, mine in self._by_tile(ids):
            if compiled and isinstance(mine, slice):  # ascending ids: one compiled pass
                self.devices.count_half_selected(
                    tile.first_device, tile.shape, ids[mine], applied[mine]
                )
                continue
            rows, cols = np.divmod(ids[mine] - tile.first_device, tile.shape[1])
            if idle:
                totals = exposure_totals(
                    tile.shape, rows, cols, applied[mine], amplitude_v, self.scheme
                )
                if totals.amplitude_v > 0:  # as DeviceArray.disturb: a 0 V exposure is none
                    self.devices.count_exposures(
                        tile.first_device,
                        tile.shape,
                        totals.per_row,
                        totals.per_col,
                        totals.everyone,
                        rows,
                        cols,
                        totals.own,
                    )
                continue
            exposure = disturb_exposure(
                tile.shape, rows, cols, applied[mine], amplitude_v, self.scheme
            )
            for polarity in (1, -1):
                flat, n = exposure.for_polarity(polarity)
                if flat.size:
                    out = self.devices.disturb(
                        tile.first_device + flat, exposure.amplitude_v, width_s, polarity, n
                    )
                    moved += int(np.count_nonzero(out.g_after != out.g_before))
        return moved

    def _by_tile(self, ids: np.ndarray) -> list[tuple[Tile, slice | np.ndarray]]:
        """The tiles that hold some of ``ids`` and which of them: a slice when the ids
        ascend (as a plan's do: no mask, no gather), else a boolean mask."""
        tiles = self.network.tiles
        if ids.size < 2 or kernels.int_summary(ids)[2]:
            bounds = np.searchsorted(ids, [*self._tile_first, self.network.n_devices])
            return [
                (tile, slice(int(bounds[t]), int(bounds[t + 1])))
                for t, tile in enumerate(tiles)
                if bounds[t + 1] > bounds[t]
            ]
        tile_of = np.searchsorted(self._tile_first, ids, side="right") - 1
        return [(tile, tile_of == t) for t, tile in enumerate(tiles) if np.any(tile_of == t)]

    def read_conductances(self, device_ids: np.ndarray | None = None) -> np.ndarray:
        """Conductances (S) of the given devices (all by default), with the model's read
        noise."""
        if device_ids is None:
            return self.devices.read()
        return self.devices.read(check_device_ids(device_ids, self.network.n_devices))

    def safe_state(self) -> SafeStateReport:
        """All inputs to 0 V and nudges to 0 A; a simulation always confirms it."""
        self.applied_inputs = np.zeros(self.network.n_input_sources)
        self.applied_nudges = np.zeros(self.network.n_output_nodes)
        return SafeStateReport()

    def close(self) -> None:
        """Go to the safe state; a simulated bench holds no other resource."""
        self.safe_state()

    # --- device state ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything the future depends on, as numpy arrays (for ``np.savez`` checkpoints).

        Keys: ``conductances`` and ``pulse_counts`` (shape (n_devices,)), ``devices.<name>``
        for every per-device array of the :class:`DeviceArray` (bounds, step scales, stuck
        masks, counters), ``devices.meta`` (its model and random streams as JSON) and
        ``converters.<name>`` (the ADC noise stream and overflow counter).
        """
        device_state = self.devices.state_dict()
        state = {"conductances": self._g.copy(), "pulse_counts": self.pulse_counts}
        meta = {}
        for key, value in device_state.items():
            if isinstance(value, np.ndarray):
                state[f"devices.{key}"] = value
            else:
                meta[key] = value
        state["devices.meta"] = np.array(json.dumps(meta))
        state.update({f"converters.{k}": v for k, v in self.converters.state_dict().items()})
        return state

    @property
    def restores_devices(self) -> bool:
        """True: a checkpoint holds the simulated devices themselves."""
        return True

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what :meth:`state_dict` saved (same network and device model).

        Raises
        ------
        ConfigError
            If the state belongs to another network size or device model.
        """
        if "devices.meta" not in state:
            raise ConfigError("saved bench state holds no device state (devices.meta)")
        device_state: dict[str, Any] = json.loads(str(state["devices.meta"]))
        for key, value in state.items():
            if key.startswith("devices.") and key != "devices.meta":
                device_state[key.removeprefix("devices.")] = np.asarray(value)
        self.devices.load_state_dict(device_state)
        converters = {
            k.removeprefix("converters."): v for k, v in state.items() if k.startswith("conv")
        }
        if converters:
            self.converters.load_state_dict(converters)
        self._sync_conductances()

    def __enter__(self) -> SimulatedBench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
