"""The emulated SMU itself: the models it can be, its channels and its error queue.

:data:`EMULATED_MODELS` names every instrument model the emulator speaks for, with its
identity, dialect, channels and ranges. An :class:`EmulatedSmu` is the state one emulated
instrument keeps (a :class:`ChannelState` per channel and the error queue) and what the
dialects (:mod:`~simulators.instruments.scpi_dialects`,
:mod:`~simulators.instruments.tsp_interpreter`) act on; its measurements come from a
:class:`~simulators.instruments.smu_backends.SmuBackend`.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Literal

from hil.vocabulary import SourceMode
from simulators.instruments.smu_backends import SmuBackend

#: How an emulated model is spoken to: Keithley 2400 SCPI, Keithley 2450 SCPI, Keithley
#: 2600B TSP, B2900 SCPI.
SmuDialect = Literal["2400", "2450", "tsp", "b2900"]

#: A numeric argument, as both dialects accept it.
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


@dataclass
class ChannelState:
    """Source settings of one emulated channel (values in V and A)."""

    source_mode: SourceMode = "voltage"
    voltage_level: float = 0.0
    current_level: float = 0.0
    current_limit: float = 1e-4
    voltage_limit: float = 20.0
    output_on: bool = False
    auto_output_on: bool = True
    forced_compliance: bool = False


@dataclass(frozen=True)
class EmulatedModel:
    """An instrument model the server can emulate.

    Attributes
    ----------
    idn : str
        The reply to ``*IDN?``.
    dialect : {'2400', '2450', 'tsp', 'b2900'}
        The command language the model speaks.
    channels : tuple of str
        Channel names, in the instrument's order.
    max_voltage, max_current : float
        Largest source level or compliance the instrument accepts (V, A).
    min_current_limit, min_voltage_limit : float
        Smallest compliance the instrument accepts (A, V).
    reset_current_limit, reset_voltage_limit : float
        The compliances a reset leaves (A, V).

    Notes
    -----
    The figures are the drivers' limit tables' (each cited there from the manual), so that
    the emulator refuses what the instrument would.
    """

    idn: str
    dialect: SmuDialect
    channels: tuple[str, ...]
    max_voltage: float
    max_current: float
    min_current_limit: float = 1e-9
    min_voltage_limit: float = 1e-2
    reset_current_limit: float = 1e-4
    reset_voltage_limit: float = 20.0


EMULATED_MODELS: dict[str, EmulatedModel] = {
    "2400": EmulatedModel(
        "KEITHLEY INSTRUMENTS INC.,MODEL 2400,0000001,C32 emulated",
        "2400",
        ("1",),
        210,
        1.05,
        reset_current_limit=105e-6,
        reset_voltage_limit=21.0,
    ),
    "2450": EmulatedModel(
        "KEITHLEY INSTRUMENTS,MODEL 2450,0000001,1.7.12b emulated",
        "2450",
        ("1",),
        210,
        1.05,
        min_voltage_limit=0.02,
        reset_current_limit=105e-6,
        reset_voltage_limit=21.0,
    ),
    "2636B": EmulatedModel(
        "Keithley Instruments Inc., Model 2636B, 0000001, 3.2.2",
        "tsp",
        ("smua", "smub"),
        200,
        1.5,
        min_current_limit=100e-12,
        min_voltage_limit=20e-3,
        reset_current_limit=100e-3,
        reset_voltage_limit=20.0,
    ),
    "B2902A": EmulatedModel(
        "Keysight Technologies,B2902A,MY00000001,3.4.2011.5100",
        "b2900",
        ("1", "2"),
        210,
        3.03,
        reset_current_limit=100e-6,
        reset_voltage_limit=2.0,
    ),
}

# field -> (largest: attribute of EmulatedModel, smallest: attribute or None for symmetric)
_FIELDS = {
    "voltage_level": ("max_voltage", None),
    "current_level": ("max_current", None),
    "current_limit": ("max_current", "min_current_limit"),
    "voltage_limit": ("max_voltage", "min_voltage_limit"),
}
#: The compliance fields a :attr:`EmulatedSmu.refuse_limits` fault refuses.
LIMIT_FIELDS = ("current_limit", "voltage_limit")


class OutOfRange(ValueError):
    """A parameter outside the instrument's range (error -222)."""


class DeadChannel(RuntimeError):
    """A command to a channel killed by fault injection (error -300, nothing changed)."""


@dataclass
class EmulatedSmu:
    """Instrument state shared by the dialects: channels, error queue and measurements.

    Parameters
    ----------
    model : EmulatedModel
    backend : SmuBackend
        What the channels measure.

    Attributes
    ----------
    refuse_limits : bool
        Fault injection: every compliance setting is refused (error -222), the previous one
        kept, as an instrument does with a value it cannot take.
    dead : set of str
        Fault injection: channels that refuse every command (error -300) and keep their
        state, as a channel whose hardware failed; their state is still read back.
    switched_on : Counter
        Channel -> times its output was switched on (survives resets): a test's proof that
        an output never went on.
    prompts : bool
        TSP ``localnode.prompts``: every message is answered with a ``TSP>`` line after
        what it prints.
    """

    model: EmulatedModel
    backend: SmuBackend
    channels: dict[str, ChannelState] = field(default_factory=dict)
    errors: deque[tuple[int, str]] = field(default_factory=deque)
    refuse_limits: bool = False
    dead: set[str] = field(default_factory=set)
    switched_on: Counter[str] = field(default_factory=Counter)
    prompts: bool = False

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Every channel back to its defaults: 0 V source, output off, the model's reset
        compliances, no forced compliance; a dead channel stays as it is."""
        fresh = {
            name: ChannelState(
                current_limit=self.model.reset_current_limit,
                voltage_limit=self.model.reset_voltage_limit,
            )
            for name in self.model.channels
        }
        for name in self.dead & set(self.channels):
            fresh[name] = self.channels[name]
        self.channels = fresh

    def alive(self, channel: str) -> ChannelState:
        """The state of ``channel`` to change; :class:`DeadChannel` if it was killed."""
        if channel in self.dead:
            raise DeadChannel(channel)
        return self.channels[channel]

    def set_field(self, channel: str, name: str, value: float) -> None:
        """Set a numeric source setting; raise :class:`OutOfRange` if it is not allowed (or
        a compliance while :attr:`refuse_limits`), :class:`DeadChannel` on a dead one."""
        state = self.alive(channel)
        high_name, low_name = _FIELDS[name]
        high = getattr(self.model, high_name)
        low = -high if low_name is None else getattr(self.model, low_name)
        if not low <= value <= high or (self.refuse_limits and name in LIMIT_FIELDS):
            raise OutOfRange(name)
        setattr(state, name, value)

    def set_output(self, channel: str, on: bool) -> None:
        """Switch ``channel``'s output (counted in :attr:`switched_on`)."""
        state = self.alive(channel)
        if on and not state.output_on:
            self.switched_on[channel] += 1
        state.output_on = on

    def set_mode(self, channel: str, mode: SourceMode) -> None:
        """Select ``channel``'s source function."""
        self.alive(channel).source_mode = mode

    def measure(self, channel: str) -> tuple[float, float, bool]:
        """Return (voltage [V], current [A], in compliance) from the backend."""
        s = self.channels[channel]
        by_voltage = s.source_mode == "voltage"
        level = s.voltage_level if by_voltage else s.current_level
        compliance = s.current_limit if by_voltage else s.voltage_limit
        voltage, current = self.backend.measure(
            channel, s.source_mode, level, compliance, s.output_on
        )
        limited = abs(current if by_voltage else voltage) >= compliance * (1 - 1e-9)
        if s.forced_compliance and s.output_on:
            limited = True
            if by_voltage:
                current = math.copysign(compliance, level or 1.0)
            else:
                voltage = math.copysign(compliance, level or 1.0)
        return voltage, current, limited and s.output_on
