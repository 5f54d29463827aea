"""The Bench protocol (the abstract device layer) and the values that cross it.

A bench owns one network instance and does four things to it: set input voltages, clamp the
outputs with nudge currents (both in :meth:`Bench.settle`), measure voltages (the
:class:`Measurement` that ``settle`` returns), and pulse memristors (:meth:`Bench.pulse`),
plus reading conductances for write-verify. Every operation is checked against the bench's
:class:`SafetyLimits` before anything is applied; a violation raises
:class:`~hil.errors.SafetyError` and changes nothing. No instrument or simulator code here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
from pydantic import Field, model_validator

from hil import kernels
from hil.errors import SafetyError
from hil.network import Network
from hil.schema import MAX_COUNT, Schema


class SafetyLimits(Schema):
    """Limits a bench enforces on every operation (checked before anything is applied).

    Attributes
    ----------
    max_input_voltage : float
        Largest |V| on any input source (V).
    max_nudge_current : float
        Largest |I| a nudge current source may inject (A).
    compliance_current : float
        Current compliance of every voltage source (A).
    compliance_voltage : float
        Voltage compliance of every current source (V).
    pulse_amplitude : tuple of float
        Allowed ``(min, max)`` programming pulse amplitude (V).
    pulse_width : tuple of float
        Allowed ``(min, max)`` programming pulse width (s).
    max_pulses_per_request : int
        Most pulses one device may receive in one request.
    """

    max_input_voltage: float = Field(10.0, gt=0, le=1e6)
    max_nudge_current: float = Field(1e-3, gt=0, le=1e3)
    compliance_current: float = Field(10e-3, gt=0, le=1e3)
    compliance_voltage: float = Field(10.0, gt=0, le=1e6)
    pulse_amplitude: tuple[float, float] = (0.1, 3.0)
    pulse_width: tuple[float, float] = (10e-9, 1e-3)
    max_pulses_per_request: int = Field(1000, gt=0, le=MAX_COUNT)

    @model_validator(mode="after")
    def _ranges(self) -> SafetyLimits:
        for name in ("pulse_amplitude", "pulse_width"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be (min, max) with 0 < min <= max, got {lo, hi}")
        return self

    def check_inputs(self, inputs: np.ndarray) -> None:
        """Raise SafetyError if any input voltage exceeds ``max_input_voltage``."""
        _check_abs("input voltage", inputs, self.max_input_voltage, "V")

    def check_nudges(self, nudges: np.ndarray) -> None:
        """Raise SafetyError if any nudge current exceeds ``max_nudge_current``."""
        _check_abs("nudge current", nudges, self.max_nudge_current, "A")

    def check_pulse(self, request: PulseRequest) -> None:
        """Raise SafetyError if the pulse shape or counts are out of limits."""
        _check_range("pulse amplitude", request.amplitude_v, self.pulse_amplitude, "V")
        _check_range("pulse width", request.width_s, self.pulse_width, "s")
        counts = np.asarray(request.counts)
        if counts.size:
            # compare both ends: np.abs of the most negative int64 overflows to itself
            low, high, _ = kernels.int_summary(counts)
            worst = max(high, -low)
            if worst > self.max_pulses_per_request:
                raise SafetyError(
                    f"pulse count {worst} exceeds max_pulses_per_request "
                    f"({self.max_pulses_per_request}); nothing was applied"
                )


def _check_abs(what: str, values: np.ndarray, limit: float, unit: str) -> None:
    values = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(values)):
        raise SafetyError(f"{what} contains NaN or infinity; nothing was applied")
    worst = float(np.abs(values).max(initial=0.0))
    if worst > limit:
        raise SafetyError(
            f"{what} {worst:g} {unit} exceeds the limit of {limit:g} {unit}; nothing was applied"
        )


def _check_range(what: str, value: float, bounds: tuple[float, float], unit: str) -> None:
    lo, hi = bounds
    if not lo <= value <= hi:
        raise SafetyError(
            f"{what} {value:g} {unit} is outside [{lo:g}, {hi:g}] {unit}; nothing was applied"
        )


@dataclass(frozen=True, init=False)
class Measurement:
    """What one settle measured, with the status of every reading.

    Attributes
    ----------
    node_voltages : ndarray, shape (B, n_nodes)
        Voltage of every network node (V), in the network's node order.
    drops : ndarray, shape (B, n_devices)
        Voltage across every crossbar device (V), row line minus column node. Derived from
        ``node_voltages`` on first use when the measurement was made with a ``network``
        (what :meth:`from_voltages` does): at 159,040 devices and a batch of 256 they are
        325 MB that training never needs (EqProp takes its gradient from the node
        voltages, evaluation only the outputs).
    outputs : ndarray, shape (B, classes)
        Differential outputs ``V+ - V-`` (V).
    compliance : ndarray of bool, shape (B, n_nodes)
        True at a driven node (an input or bias source, an output's nudge source) whose
        instrument channel was limited by its compliance during the sample. A simulated
        bench has no compliance model and leaves it all False.
    overflow : ndarray of bool, shape (B, n_nodes)
        True at a measured node whose converter saturated (an ADC overflow): its voltage
        is the converter's full scale, not the node's.
    network : Network or None
        The network whose :meth:`~hil.network.Network.drops` give ``drops`` from
        ``node_voltages``; None when the drops were given (measured some other way).

    Notes
    -----
    A bench whose config says ``flagged_samples: raise`` raises instead of returning a
    flagged sample; with ``record`` the flags are data and the caller decides.
    """

    node_voltages: np.ndarray
    outputs: np.ndarray
    compliance: np.ndarray
    overflow: np.ndarray
    network: Network | None = field(default=None, repr=False, compare=False)
    _drops: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __init__(
        self,
        node_voltages: np.ndarray,
        drops: np.ndarray | None,
        outputs: np.ndarray,
        compliance: np.ndarray,
        overflow: np.ndarray,
        *,
        network: Network | None = None,
    ) -> None:
        """The readings of one settle; ``drops=None`` derives them from ``network``."""
        if drops is None and network is None:
            raise ValueError("a Measurement needs its drops, or the network to derive them")
        setattr_ = object.__setattr__  # frozen: set once here, never after
        setattr_(self, "node_voltages", node_voltages)
        setattr_(self, "outputs", outputs)
        setattr_(self, "compliance", compliance)
        setattr_(self, "overflow", overflow)
        setattr_(self, "network", network if drops is None else None)
        setattr_(self, "_drops", drops)

    @property
    def drops(self) -> np.ndarray:
        """Voltage across every device (V), shape (B, n_devices); see the class docstring."""
        if self._drops is None:
            assert self.network is not None  # __init__ refuses neither drops nor network
            # A benign race: two threads would compute the same array.
            object.__setattr__(self, "_drops", self.network.drops(self.node_voltages))
        assert self._drops is not None
        return self._drops

    @classmethod
    def from_voltages(
        cls,
        network: Network,
        node_voltages: np.ndarray,
        *,
        compliance: np.ndarray | None = None,
        overflow: np.ndarray | None = None,
    ) -> Measurement:
        """Outputs from measured node voltages, drops derived on first use (no flags by
        default)."""
        clear = np.zeros(node_voltages.shape, dtype=bool)
        return cls(
            node_voltages,
            None,
            network.outputs(node_voltages),
            clear if compliance is None else np.asarray(compliance, dtype=bool),
            clear.copy() if overflow is None else np.asarray(overflow, dtype=bool),
            network=network,
        )

    @property
    def flagged(self) -> np.ndarray:
        """Samples with any reading in compliance or overflowed, bool shape (B,)."""
        return np.any(self.compliance | self.overflow, axis=1)


def check_settle_args(
    network: Network,
    limits: SafetyLimits,
    inputs: object,
    nudges: object | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Check a settle's arguments; the one check every bench runs before applying anything.

    Parameters
    ----------
    network : Network
    limits : SafetyLimits
    inputs : array_like, shape (B, 2*inputs)
        Input source voltages (V), ``+x`` then ``-x``. Exactly two dimensions.
    nudges : array_like, shape (B, 2*classes), optional
        Output nudge currents (A); None for the free phase (all 0 A).

    Returns
    -------
    inputs, nudges : ndarray of float
        Validated copies; ``nudges`` is zeros when None was given.

    Raises
    ------
    SafetyError
        Naming the argument, the shape or limit it broke, and what it got.
    """
    want = network.n_input_sources
    x = _float_array("inputs", inputs)
    if x.ndim != 2 or x.shape[1] != want or x.shape[0] == 0:
        raise SafetyError(
            f"inputs must have shape (batch, {want}) with batch >= 1, got {x.shape};"
            " nothing was applied"
        )
    limits.check_inputs(x)
    n_out = network.n_output_nodes
    if nudges is None:
        return x, np.zeros((len(x), n_out))
    i = _float_array("nudges", nudges)
    if i.shape != (len(x), n_out):
        raise SafetyError(
            f"nudges must have shape ({len(x)}, {n_out}) like the inputs' batch, got "
            f"{i.shape}; nothing was applied"
        )
    limits.check_nudges(i)
    return x, i


def _float_array(name: str, value: object) -> np.ndarray:
    try:
        array = np.array(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise SafetyError(
            f"{name} must be an array of numbers ({exc}); nothing was applied"
        ) from None
    return array


@dataclass(frozen=True)
class SafeStateReport:
    """What :meth:`Bench.safe_state` could confirm.

    Attributes
    ----------
    unconfirmed : tuple of str
        Parts (instruments) whose safe state could not be confirmed: a person must switch
        their outputs off by hand. Empty when the whole bench is confirmed safe.
    """

    unconfirmed: tuple[str, ...] = ()

    @property
    def confirmed(self) -> bool:
        """True when every part of the bench confirmed its safe state."""
        return not self.unconfirmed

    def words(self) -> str:
        """One phrase for a person at the bench."""
        if self.confirmed:
            return "bench left in its safe state"
        names = ", ".join(self.unconfirmed)
        return f"could NOT confirm the safe state of {names}: switch their outputs off by hand"


@dataclass(frozen=True)
class PulseRequest:
    """Programming pulses for a set of devices.

    Attributes
    ----------
    device_ids : ndarray of int, shape (n,)
    counts : ndarray of int, shape (n,)
        Pulses per device; positive potentiates (raises G), negative depresses.
    amplitude_v : float
        Pulse amplitude (V); depressing pulses are applied at ``-amplitude_v``.
    width_s : float
        Pulse width (s).
    """

    device_ids: np.ndarray
    counts: np.ndarray
    amplitude_v: float
    width_s: float

    def __post_init__(self) -> None:
        ids = np.asarray(self.device_ids)
        counts = np.asarray(self.counts)
        if ids.ndim != 1 or ids.shape != counts.shape:
            raise SafetyError(
                f"device_ids and counts must be 1-D of equal length, got shapes "
                f"{ids.shape} and {counts.shape}; nothing was applied"
            )
        if not np.issubdtype(ids.dtype, np.integer) or not np.issubdtype(counts.dtype, np.integer):
            raise SafetyError("device_ids and counts must be integers; nothing was applied")
        if self._repeats(ids):
            raise SafetyError("device_ids must not repeat within a request; nothing was applied")

    def check_devices(self, n_devices: int) -> None:
        """Raise SafetyError unless every id is a device of a network of ``n_devices``."""
        check_device_ids(self.device_ids, n_devices)

    #: Widest id range, as a multiple of the number of ids (plus 4096), that
    #: :meth:`_repeats` checks by marking a table; wider, sparser ranges are sorted instead.
    _DENSE_SPAN: ClassVar[int] = 8

    @classmethod
    def _repeats(cls, ids: np.ndarray) -> bool:
        """Whether any id occurs twice: O(n) for ascending ids, or ids within a range of
        ~8n (device ids).

        A request's ids lie in ``[0, n_devices)``; marking them in a table of that range
        costs O(n) where sorting (``np.unique``) costs O(n log n), 40 ms at 159,040 ids.
        Ids spread over a far wider range (no bench's device ids: ``check_devices`` refuses
        them later) are sorted, so no table is ever more than a few times the request.
        """
        n = ids.size
        if n < 2:
            return False
        lo, hi, ascending = kernels.int_summary(ids)
        if ascending:  # strictly ascending (a plan's ids): distinct
            return False
        span = hi - lo + 1  # Python ints: no overflow at the int64 extremes
        if span < n:
            return True  # pigeonhole: n distinct integers need n values
        if span > cls._DENSE_SPAN * n + 4096:
            return bool(len(np.unique(ids)) != n)
        # unsigned ids are all >= lo, so the subtraction cannot wrap; signed ones go via int64
        if ids.dtype.kind == "u":
            offsets = ids - ids.dtype.type(lo)
        else:
            offsets = ids.astype(np.int64) - lo
        seen = np.zeros(span, dtype=bool)
        seen[offsets] = True
        return int(np.count_nonzero(seen)) != n


def check_device_ids(device_ids: object, n_devices: int) -> np.ndarray:
    """Device ids as int64, checked: integers (a float id is refused, never truncated),
    1-D, each in ``[0, n_devices)``; the one check every bench runs before a pulse or read.

    Raises
    ------
    SafetyError
        Naming what was wrong; nothing was applied or read.
    """
    ids = np.asarray(device_ids)
    if ids.ndim != 1:
        raise SafetyError(f"device ids must be 1-D, got shape {ids.shape}; nothing was applied")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise SafetyError(
            f"device ids must be integers, got {ids.dtype} values; nothing was applied"
        )
    ids = ids.astype(np.int64, copy=False)
    if ids.size:
        lo, hi, _ = kernels.int_summary(ids)
        if lo < 0 or hi >= n_devices:
            raise SafetyError(
                f"device ids must be in [0, {n_devices}), got [{lo}, {hi}]; nothing was applied"
            )
    return ids


@dataclass(frozen=True)
class PulseReport:
    """What a bench actually applied for a :class:`PulseRequest`.

    Attributes
    ----------
    device_ids : ndarray of int, shape (n,)
    applied : ndarray of int, shape (n,)
        Signed pulses delivered to each device.
    refused : ndarray of int, shape (n,)
        Pulses not delivered (e.g. a device at its endurance limit), with the reason in
        ``notes``.
    notes : list of str
    """

    device_ids: np.ndarray
    applied: np.ndarray
    refused: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    notes: list[str] = field(default_factory=list)

    @property
    def total_pulses(self) -> int:
        """Pulses delivered in all, either polarity."""
        return int(np.abs(self.applied).sum())


@dataclass(frozen=True)
class PulseCalibration:
    """Nominal response of the bench's devices, used to plan open-loop programming.

    Attributes
    ----------
    step_up, step_down : float
        Mean conductance change per potentiating / depressing pulse (S, both > 0).
    amplitude_v, width_s : float
        The pulse shape these steps refer to (V, s).
    """

    step_up: float
    step_down: float
    amplitude_v: float
    width_s: float


@runtime_checkable
class Bench(Protocol):
    """A network instance the trainer can drive: simulated, emulated or physical."""

    network: Network
    limits: SafetyLimits
    calibration: PulseCalibration

    def settle(self, inputs: np.ndarray, nudges: np.ndarray | None = None) -> Measurement:
        """Apply input voltages (B, 2*inputs) and output nudge currents (B, 2*classes),
        wait for equilibrium and measure. Settles the whole batch (a lab bench loops).
        Arguments are checked by :func:`check_settle_args` before anything is applied."""
        ...

    def pulse(self, request: PulseRequest) -> PulseReport:
        """Apply programming pulses; every pulse delivered is counted."""
        ...

    def read_conductances(self, device_ids: np.ndarray | None = None) -> np.ndarray:
        """Read conductances (S) at a small read voltage; all devices when ids is None."""
        ...

    def safe_state(self) -> SafeStateReport:
        """All sources to 0 V / 0 A, outputs off; tries every part whatever fails, never
        raises, and reports what it could not confirm."""
        ...

    def close(self) -> None:
        """Go to the safe state and release every resource."""
        ...


@runtime_checkable
class StatefulBench(Protocol):
    """A bench whose state can be saved and restored for checkpoints: a simulated bench
    its devices, counters and random streams; a lab bench its pulse counters (and, for an
    emulated lab, the emulated devices)."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """The device state as numpy arrays (for checkpoints)."""
        ...

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_dict` returned."""
        ...

    @property
    def restores_devices(self) -> bool:
        """Whether :meth:`load_state_dict` puts the devices back where :meth:`state_dict`
        found them (a simulated or emulated bench). A physical crossbar keeps its own
        state: its saved state is counters only, and those only ever grow."""
        ...


def restores_devices(bench: Bench) -> bool:
    """Whether a checkpoint of ``bench`` brings its devices back (else they are where the
    last pulses left them, and an estimate of them from a checkpoint is out of date)."""
    return isinstance(bench, StatefulBench) and bench.restores_devices


@runtime_checkable
class PulseCounting(Protocol):
    """A bench that counts the pulses every device received (every bench here does)."""

    @property
    def pulse_counts(self) -> np.ndarray:
        """Pulses delivered to every device, int shape (n_devices,)."""
        ...


@contextmanager
def in_safe_hands(bench: Bench) -> Iterator[Bench]:
    """Use a bench and leave it in its safe state on every way out (errors, Ctrl-C)."""
    try:
        yield bench
    finally:
        bench.safe_state()
