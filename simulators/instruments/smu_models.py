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
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from hil.vocabulary import SourceMode
from simulators.instruments.smu_backends import SmuBackend

#: How an emulated model is spoken to: Keithley 2400 SCPI, Keithley 2600B TSP, B2900 SCPI.
SmuDialect = Literal["2400", "tsp", "b2900"]

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
    dialect : {'2400', 'tsp', 'b2900'}
        The command language the model speaks.
    channels : tuple of str
        Channel names, in the instrument's order.
    max_voltage, max_current : float
        Largest source level or compliance the instrument accepts (V, A).
    """

    idn: str
    dialect: SmuDialect
    channels: tuple[str, ...]
    max_voltage: float
    max_current: float


EMULATED_MODELS: dict[str, EmulatedModel] = {
    "2400": EmulatedModel(
        "KEITHLEY INSTRUMENTS INC.,MODEL 2400,0000001,C32 emulated", "2400", ("1",), 210, 1.05
    ),
    "2636B": EmulatedModel(
        "Keithley Instruments Inc., Model 2636B, 0000001, 3.2.2",
        "tsp",
        ("smua", "smub"),
        202,
        1.515,
    ),
    "B2902A": EmulatedModel(
        "Keysight Technologies,B2902A,MY00000001,3.4.2011.5100",
        "b2900",
        ("1", "2"),
        210,
        1.515,
    ),
}

# field -> (limit attribute of EmulatedModel, smallest allowed value or None for symmetric)
_FIELDS = {
    "voltage_level": ("max_voltage", None),
    "current_level": ("max_current", None),
    "current_limit": ("max_current", 1e-9),
    "voltage_limit": ("max_voltage", 1e-2),
}


class OutOfRange(ValueError):
    """A parameter outside the instrument's range (error -222)."""


@dataclass
class EmulatedSmu:
    """Instrument state shared by the dialects: channels, error queue and measurements.

    Parameters
    ----------
    model : EmulatedModel
    backend : SmuBackend
        What the channels measure.
    """

    model: EmulatedModel
    backend: SmuBackend
    channels: dict[str, ChannelState] = field(default_factory=dict)
    errors: deque[tuple[int, str]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Every channel back to its defaults: 0 V source, output off, no forced compliance."""
        self.channels = {name: ChannelState() for name in self.model.channels}

    def set_field(self, channel: str, name: str, value: float) -> None:
        """Set a numeric source setting; raise :class:`OutOfRange` if it is not allowed."""
        limit_name, low = _FIELDS[name]
        high = getattr(self.model, limit_name)
        low = -high if low is None else low
        if not low <= value <= high:
            raise OutOfRange(name)
        setattr(self.channels[channel], name, value)

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
