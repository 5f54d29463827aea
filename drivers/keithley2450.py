"""Keithley 2450 Interactive SourceMeter (SCPI command set, one channel named '1').

References
----------
Keithley, *Model 2450 Interactive SourceMeter Instrument Reference Manual* (2450-901-01
Rev. B, September 2013), section 6 "SCPI command reference" ("p. 6-71" below). The 2450
must be set to its SCPI command set (the default; the TSP set is another language).

Notes
-----
Compliance is the 2450's *source limit*: ``:SOURce:VOLTage:ILIMit`` limits the current of
the voltage source, ``:SOURce:CURRent:VLIMit`` the voltage of the current source (p. 6-71),
and ``:SOURce:<function>:<x>LIMit:TRIPped?`` answers 1 while the source is clamped there
(p. 6-72). Only the limit of the present source function is queried for compliance.
Measurements are ``:MEASure:<function>?`` (p. 6-4: it selects the measure function, then
does what ``:READ?`` does, p. 6-6, and returns the reading).
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

# p. 6-71: the current limit of the voltage source is -1.05 A to 1.05 A, the voltage limit
# of the current source -210 V to 210 V (*RST defaults 105 uA and 21 V; the TSP page of the
# same command, p. 8-137, gives 1 A / 200 V, so the SCPI page's figures are taken as the
# command set used here says). The source level ranges (p. 6-7x, :SOURce:<function>:LEVel)
# were not read: +-210 V / +-1.05 A are assumed equal to the limits (NOT confirmed).
# Smallest limits: p. 6-71 says only that with a fixed measure range a limit must exceed
# 0.1 % of it; 1 nA and 20 mV (the 2450's lowest current range is 10 nA and voltage range
# 20 mV) are NOT confirmed; a refused value is caught by the compliance read-back.
MODELS: dict[str, SmuLimits] = {
    "2450": SmuLimits(
        ("1",), max_voltage=210.0, max_current=1.05, min_current_limit=1e-9, min_voltage_limit=0.02
    ),
}


class Keithley2450Channel(SmuChannel):
    """The single source-measure channel of a 2450."""

    # :SOURce[1]:FUNCtion[:MODE] VOLTage|CURRent (p. 6-72)
    source_mode = control(
        ":SOUR:FUNC?",
        ":SOUR:FUNC {value}",
        values={"voltage": "VOLT", "current": "CURR"},
        doc="Source function, 'voltage' or 'current'.",
    )
    # :SOURce[1]:<function>[:LEVel][:IMMediate][:AMPLitude] <n> (section 6 SOURce subsystem)
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
    # :SOURce[1]:VOLTage:ILIMit[:LEVel] <n>, :SOURce[1]:CURRent:VLIMit[:LEVel] <n> (p. 6-71)
    current_limit = control(
        ":SOUR:VOLT:ILIM?",
        ":SOUR:VOLT:ILIM {value}",
        validator=CURRENT_LIMIT,
        units="A",
        doc="Current limit (compliance) of the voltage source.",
    )
    voltage_limit = control(
        ":SOUR:CURR:VLIM?",
        ":SOUR:CURR:VLIM {value}",
        validator=VOLTAGE_LIMIT,
        units="V",
        doc="Voltage limit (compliance) of the current source.",
    )
    # :OUTPut[1][:STATe] ON|OFF (section 6 OUTPut subsystem; page not read)
    output_enabled = control(
        ":OUTP?", ":OUTP {value}", values=ON_OFF, parse=parse_bool, doc="Output on/off."
    )
    # [:SENSe[1]]:FUNCtion[:ON] "<function>" (section 6 SENSe1 subsystem)
    sense_function = setting(
        ":SENS:FUNC {value}",
        values={"voltage": '"VOLT"', "current": '"CURR"'},
        doc="Measure function.",
    )
    # :MEASure:<function>? (p. 6-4)
    voltage = measurement(":MEAS:VOLT?", units="V", doc="Measured voltage.")
    current = measurement(":MEAS:CURR?", units="A", doc="Measured current.")
    # :SOURce[1]:<function>:<x>LIMit[:LEVel]:TRIPped? (p. 6-72): 0 or 1
    current_limit_tripped = measurement(
        ":SOUR:VOLT:ILIM:TRIP?", parse=parse_bool, doc="Current limit of the V source reached."
    )
    voltage_limit_tripped = measurement(
        ":SOUR:CURR:VLIM:TRIP?", parse=parse_bool, doc="Voltage limit of the I source reached."
    )

    def in_compliance(self) -> bool:
        """Whether the present source function's limit is reached (its trip query only)."""
        with self.lock:
            mode = self.safety.mode
            if mode is None:
                mode = self.source_mode  # read back and recorded
            if mode == "voltage":
                return bool(self.current_limit_tripped)
            return bool(self.voltage_limit_tripped)


class Keithley2450(Smu):
    """Keithley 2450 SourceMeter (SCPI command set); channel ``'1'``."""

    models = MODELS
    channel_class = Keithley2450Channel
    # *RST (defaults, output off) and *CLS (empty event log): IEEE 488.2 common commands.
    # [:SENSe[1]]:COUNt 1: one reading per measure query (the *RST value; the 2450's COUNt page
    # was not read, the 2461's manual of the same family cites it for :MEASure?: NOT
    # confirmed for the 2450).
    reset_commands = ("*RST", "*CLS", ":SENS:COUN 1")
