"""Keithley 2400-series SourceMeter (SCPI, one channel named '1').

References
----------
Keithley, *2400 Series SourceMeter User's Manual* (2400S-900-01), section 18 "SCPI Command
Reference" ("§18" below). Page numbers are those of the manual's revision seen (its pages
18-68 and 18-78 were read; the rest of the forms are the manual's short forms as used in
its examples, not re-read page by page here).

Notes
-----
On connect the driver sets ``:FORM:ELEM VOLT,CURR,STAT`` and turns on both sense functions,
so one ``:READ?`` returns voltage [V], current [A] and the status word, whose bit 3 (value 8)
is the compliance flag (§18 FORMat subsystem, status word). ``:READ?`` is used rather than
``:MEAS:VOLT?`` because ``:MEAS`` turns the output on by itself; with the output off the 2400
answers ``:READ?`` with error +803 "Output disabled" and no data (the query then times out).
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
# Smallest compliances: not confirmed in the pages read (§18-68 gives the compliance ranges
# as -max..+max with *RST defaults 105 uA / 21 V, no lower bound). 1 nA and 10 mV are kept as
# the driver's floor; a value the instrument refuses is caught by the compliance read-back.
_MIN = {"min_current_limit": 1e-9, "min_voltage_limit": 1e-2}
MODELS: dict[str, SmuLimits] = {
    # §18 p. 18-68 ([:SENSe]:<CURR|VOLT>:PROTection, 2400: +-1.05 A, +-210 V)
    "2400": SmuLimits(_ONE, max_voltage=210.0, max_current=1.05, **_MIN),
    # NOT confirmed: the 2401 rows of §18-68/18-78 were not in the pages read; 21 V and
    # 1.05 A are the previous table's figures, kept unverified
    "2401": SmuLimits(_ONE, max_voltage=21.0, max_current=1.05, **_MIN),
    # §18 p. 18-68 (2410: +-1.05 A, +-1100 V)
    "2410": SmuLimits(_ONE, max_voltage=1100.0, max_current=1.05, **_MIN),
    # §18 pp. 18-68, 18-78 (2420: +-3.15 A, +-63 V)
    "2420": SmuLimits(_ONE, max_voltage=63.0, max_current=3.15, **_MIN),
    # §18 p. 18-78 (2425 and 2430 DC mode: +-3.15 A, +-105 V; 2430 pulse mode 10.5 A is not
    # used by this driver)
    "2425": SmuLimits(_ONE, max_voltage=105.0, max_current=3.15, **_MIN),
    "2430": SmuLimits(_ONE, max_voltage=105.0, max_current=3.15, **_MIN),
    # §18 p. 18-78 (2440: +-5.25 A, +-42 V)
    "2440": SmuLimits(_ONE, max_voltage=42.0, max_current=5.25, **_MIN),
}


def parse_reading(reply: str) -> tuple[float, float, int]:
    """Parse a ``:READ?`` reply ``V,I,status`` into (voltage [V], current [A], status word).

    Exactly three fields, the last an integer status word: anything else is not a reply to
    this query (ValueError).
    """
    voltage, current, status = parse_floats(reply)
    if status != int(status) or status < 0:
        raise ValueError(f"status word {status!r} is not a non-negative integer")
    return voltage, current, int(status)


class Keithley2400Channel(SmuChannel):
    """The single source-measure channel of a 2400-series SourceMeter."""

    # §18 SOURce subsystem: :SOURce[1]:FUNCtion[:MODE] VOLTage|CURRent
    source_mode = control(
        ":SOUR:FUNC?",
        ":SOUR:FUNC {value}",
        values={"voltage": "VOLT", "current": "CURR"},
        doc="Source function, 'voltage' or 'current'.",
    )
    # §18 p. 18-78: :SOURce[1]:<CURRent|VOLTage>[:LEVel][:IMMediate][:AMPLitude] <n>
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
    # §18 p. 18-68: [:SENSe[1]]:<CURRent|VOLTage>[:DC]:PROTection[:LEVel] <n>
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
    # §18 OUTPut subsystem: :OUTPut[1][:STATe] <b>
    output_enabled = control(
        ":OUTP?", ":OUTP {value}", values=ON_OFF, parse=parse_bool, doc="Output relay on/off."
    )
    # §18 SENSe1 subsystem: [:SENSe[1]]:FUNCtion[:ON] <function list>
    sense_functions = setting(
        ":SENS:FUNC {value}",
        values={"voltage": '"VOLT"', "current": '"CURR"', "both": '"VOLT","CURR"'},
        doc="Sense functions turned on.",
    )
    reading = measurement(":READ?", parse=parse_reading, doc="(voltage [V], current [A], status).")
    # §18 SENSe1 subsystem: [:SENSe[1]]:<CURRent|VOLTage>[:DC]:PROTection:TRIPped?
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
    # *RST: defaults, output off (§18 and IEEE 488.2 common commands); *CLS: empty error
    # queue; :TRIGger:COUNt 1 (§18 TRIGger subsystem; also the *RST value): one reading per
    # :READ?, whatever a previous user left.
    reset_commands = ("*RST", "*CLS", ":TRIG:COUN 1")

    def configure(self) -> None:
        """Return voltage, current and status on every ``:READ?``; sense both V and I."""
        with self.lock:
            self.write(":FORM:ELEM VOLT,CURR,STAT")
            channel = self["1"]
            assert isinstance(channel, Keithley2400Channel)
            channel.sense_functions = "both"
