"""Keysight B2900-series Precision Source/Measure Unit (SCPI, channels '1' and '2').

Notes
-----
On connect the driver turns automatic output-on off (``:OUTPn:ON:AUTO OFF``) on every
channel, so a measurement never switches an output on by itself.
"""

from __future__ import annotations

from .instrument import control, measurement, parse_bool, setting
from .smu import (
    CURRENT_LEVEL,
    CURRENT_LIMIT,
    ON_OFF,
    VOLTAGE_LEVEL,
    VOLTAGE_LIMIT,
    Smu,
    SmuChannel,
    SmuLimits,
)

_ONE, _TWO = ("1",), ("1", "2")
_B290X = {"max_voltage": 210.0, "max_current": 1.515}  # DC; 3.03 A is pulse only
_B291X = {"max_voltage": 210.0, "max_current": 3.03}
MODELS: dict[str, SmuLimits] = {
    "B2901A": SmuLimits(_ONE, **_B290X),
    "B2902A": SmuLimits(_TWO, **_B290X),
    "B2911A": SmuLimits(_ONE, **_B291X),
    "B2912A": SmuLimits(_TWO, **_B291X),
    "B2901B": SmuLimits(_ONE, **_B290X),
    "B2902B": SmuLimits(_TWO, **_B290X),
    "B2911B": SmuLimits(_ONE, **_B291X),
    "B2912B": SmuLimits(_TWO, **_B291X),
}


class KeysightB2900Channel(SmuChannel):
    """One channel (``'1'`` or ``'2'``) of a B2900-series SMU."""

    source_mode = control(
        ":SOUR{ch}:FUNC:MODE?",
        ":SOUR{ch}:FUNC:MODE {value}",
        values={"voltage": "VOLT", "current": "CURR"},
        doc="Source function.",
    )
    voltage_setpoint = control(
        ":SOUR{ch}:VOLT?",
        ":SOUR{ch}:VOLT {value}",
        validator=VOLTAGE_LEVEL,
        units="V",
        doc="Source voltage level.",
    )
    current_setpoint = control(
        ":SOUR{ch}:CURR?",
        ":SOUR{ch}:CURR {value}",
        validator=CURRENT_LEVEL,
        units="A",
        doc="Source current level.",
    )
    current_limit = control(
        ":SENS{ch}:CURR:PROT?",
        ":SENS{ch}:CURR:PROT {value}",
        validator=CURRENT_LIMIT,
        units="A",
        doc="Current compliance.",
    )
    voltage_limit = control(
        ":SENS{ch}:VOLT:PROT?",
        ":SENS{ch}:VOLT:PROT {value}",
        validator=VOLTAGE_LIMIT,
        units="V",
        doc="Voltage compliance.",
    )
    output_enabled = control(
        ":OUTP{ch}?", ":OUTP{ch} {value}", values=ON_OFF, parse=parse_bool, doc="Output on/off."
    )
    auto_output_on = setting(
        ":OUTP{ch}:ON:AUTO {value}", values=ON_OFF, doc="Output turned on by a measurement."
    )
    voltage = measurement(":MEAS:VOLT? (@{ch})", units="V", doc="Measured voltage.")
    current = measurement(":MEAS:CURR? (@{ch})", units="A", doc="Measured current.")
    current_limit_tripped = measurement(
        ":SENS{ch}:CURR:PROT:TRIP? (@{ch})", parse=parse_bool, doc="Current compliance reached."
    )
    voltage_limit_tripped = measurement(
        ":SENS{ch}:VOLT:PROT:TRIP? (@{ch})", parse=parse_bool, doc="Voltage compliance reached."
    )

    def in_compliance(self) -> bool:
        """Whether current or voltage compliance is reached."""
        with self.lock:
            return self.current_limit_tripped or self.voltage_limit_tripped


class KeysightB2900(Smu):
    """Keysight B2900-series SMU; channels ``'1'`` (and ``'2'``)."""

    models = MODELS
    channel_class = KeysightB2900Channel

    def configure(self) -> None:
        """Turn automatic output-on off on every channel."""
        with self.lock:
            for name in self.channels:
                self[name].auto_output_on = False
