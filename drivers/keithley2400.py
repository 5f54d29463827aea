"""Keithley 2400-series SourceMeter (SCPI, one channel named '1').

Notes
-----
On connect the driver sets ``:FORM:ELEM VOLT,CURR,STAT`` and turns on both sense functions,
so one ``:READ?`` returns voltage [V], current [A] and the status word, whose bit 3 (value 8)
is the compliance flag. ``:READ?`` is used rather than ``:MEAS:VOLT?`` because ``:MEAS``
turns the output on by itself; with the output off the 2400 answers ``:READ?`` with error
+803 "Output disabled" and no data (the query then times out).
"""

from __future__ import annotations

from typing import Literal

from .instrument import control, measurement, parse_bool, parse_floats, setting
from .smu import (
    CURRENT_LEVEL,
    CURRENT_LIMIT,
    ON_OFF,
    VOLTAGE_LEVEL,
    VOLTAGE_LIMIT,
    Reading,
    Smu,
    SmuChannel,
    SmuLimits,
)

#: Status-word bit set by the 2400 while in compliance.
COMPLIANCE_BIT = 8

_ONE = ("1",)
MODELS: dict[str, SmuLimits] = {
    "2400": SmuLimits(_ONE, max_voltage=210.0, max_current=1.05),
    "2401": SmuLimits(_ONE, max_voltage=21.0, max_current=1.05),
    "2410": SmuLimits(_ONE, max_voltage=1100.0, max_current=1.05),
    "2420": SmuLimits(_ONE, max_voltage=63.0, max_current=3.15),
    "2425": SmuLimits(_ONE, max_voltage=105.0, max_current=3.15),
    "2430": SmuLimits(_ONE, max_voltage=105.0, max_current=3.15),
    "2440": SmuLimits(_ONE, max_voltage=42.0, max_current=5.25),
}


def parse_reading(reply: str) -> tuple[float, float, int]:
    """Parse a ``:READ?`` reply ``V,I,status`` into (voltage [V], current [A], status word)."""
    voltage, current, status = parse_floats(reply)
    return voltage, current, int(status)


class Keithley2400Channel(SmuChannel):
    """The single source-measure channel of a 2400-series SourceMeter."""

    source_mode = control(
        ":SOUR:FUNC?",
        ":SOUR:FUNC {value}",
        values={"voltage": "VOLT", "current": "CURR"},
        doc="Source function, 'voltage' or 'current'.",
    )
    voltage_setpoint = control(
        ":SOUR:VOLT:LEV?",
        ":SOUR:VOLT:LEV {value}",
        validator=VOLTAGE_LEVEL,
        units="V",
        doc="Source voltage level.",
    )
    current_setpoint = control(
        ":SOUR:CURR:LEV?",
        ":SOUR:CURR:LEV {value}",
        validator=CURRENT_LEVEL,
        units="A",
        doc="Source current level.",
    )
    current_limit = control(
        ":SENS:CURR:PROT?",
        ":SENS:CURR:PROT {value}",
        validator=CURRENT_LIMIT,
        units="A",
        doc="Current compliance.",
    )
    voltage_limit = control(
        ":SENS:VOLT:PROT?",
        ":SENS:VOLT:PROT {value}",
        validator=VOLTAGE_LIMIT,
        units="V",
        doc="Voltage compliance.",
    )
    output_enabled = control(
        ":OUTP?", ":OUTP {value}", values=ON_OFF, parse=parse_bool, doc="Output relay on/off."
    )
    sense_functions = setting(
        ":SENS:FUNC {value}",
        values={"voltage": '"VOLT"', "current": '"CURR"', "both": '"VOLT","CURR"'},
        doc="Sense functions turned on.",
    )
    reading = measurement(":READ?", parse=parse_reading, doc="(voltage [V], current [A], status).")
    current_limit_tripped = measurement(
        ":SENS:CURR:PROT:TRIP?", parse=parse_bool, doc="Current compliance reached."
    )
    voltage_limit_tripped = measurement(
        ":SENS:VOLT:PROT:TRIP?", parse=parse_bool, doc="Voltage compliance reached."
    )

    def measure(self, quantity: Literal["voltage", "current"]) -> Reading:
        """Measure ``quantity`` and its compliance status with one ``:READ?``."""
        voltage, current, status = self.reading
        in_compliance = bool(status & COMPLIANCE_BIT)
        if quantity == "voltage":
            return Reading(voltage, "V", in_compliance)
        return Reading(current, "A", in_compliance)

    def in_compliance(self) -> bool:
        """Whether current or voltage compliance is reached (trip queries)."""
        with self.lock:
            return self.current_limit_tripped or self.voltage_limit_tripped


class Keithley2400(Smu):
    """Keithley 2400-series SourceMeter; channel ``'1'``."""

    models = MODELS
    channel_class = Keithley2400Channel

    def configure(self) -> None:
        """Return voltage, current and status on every ``:READ?``; sense both V and I."""
        with self.lock:
            self.write(":FORM:ELEM VOLT,CURR,STAT")
            self["1"].sense_functions = "both"
