"""Keysight B2900-series Precision Source/Measure Unit (SCPI, channels '1' and '2').

References
----------
Agilent, *B2900 Series Precision Source/Measure Unit SCPI Command Reference* (B2910-90030,
Edition 2, July 2011), chapter 4 "Subsystem Commands" ("B2900 Ed. 2 p. 4-45"); where the
B2900 page was not available, the same command in the family's *Keysight B2961A/B2962A SCPI
Command Reference* (Edition 6), which documents the B2900 command tree, is cited ("B2960
Ed. 6 p. 4-91") and the citation says so.

Notes
-----
On connect the driver turns automatic output-on off (``:OUTPn:ON:AUTO OFF``, B2960 Ed. 6
p. 4-67: with it on, ``:INITiate`` or ``:READ`` turns the output on) on every channel, so a
measurement never switches an output on by itself.
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
# Source output ranges (B2900 Ed. 2 section 2 "Source Output Ranges", p. 2-24; the page read
# is the same table in B2960 Ed. 6 p. 2-36, Table 2-4): DC output up to +-210 V (at 105 mA)
# and up to +-3.03 A DC (at |V| <= 6 V); only the +-10.5 A range is pulse-only, and it is not
# used here. Smallest compliances: the compliance command (B2960 Ed. 6 p. 4-90) allows "the
# minimum measurement value" of the channel, not given as a number on the pages read: 1 nA
# and 10 mV are NOT confirmed (a value refused is caught by the compliance read-back).
_B29XX = {
    "max_voltage": 210.0,
    "max_current": 3.03,
    "min_current_limit": 1e-9,
    "min_voltage_limit": 1e-2,
}
MODELS: dict[str, SmuLimits] = {
    "B2901A": SmuLimits(_ONE, **_B29XX),
    "B2902A": SmuLimits(_TWO, **_B29XX),
    "B2911A": SmuLimits(_ONE, **_B29XX),
    "B2912A": SmuLimits(_TWO, **_B29XX),
    "B2901B": SmuLimits(_ONE, **_B29XX),
    "B2902B": SmuLimits(_TWO, **_B29XX),
    "B2911B": SmuLimits(_ONE, **_B29XX),
    "B2912B": SmuLimits(_TWO, **_B29XX),
}


class KeysightB2900Channel(SmuChannel):
    """One channel (``'1'`` or ``'2'``) of a B2900-series SMU."""

    # [:SOURce[c]]:FUNCtion:MODE CURRent|VOLTage (B2900 Ed. 2 SOURce subsystem; page not read)
    source_mode = control(
        ":SOUR{ch}:FUNC:MODE?",
        ":SOUR{ch}:FUNC:MODE {value}",
        values={"voltage": "VOLT", "current": "CURR"},
        doc="Source function.",
    )
    # [:SOURce[c]]:<CURRent|VOLTage>[:LEVel][:IMMediate][:AMPLitude] (B2900 Ed. 2 p. 4-93)
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
    # :SENSe[c]:<CURRent[:DC]|VOLTage[:DC]>:PROTection[:LEVel] (B2960 Ed. 6 p. 4-90; *RST
    # default 100 uA / 2 V)
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
    # :OUTPut[c][:STATe] (B2900 Ed. 2 OUTPut subsystem; page not read)
    output_enabled = control(
        ":OUTP{ch}?", ":OUTP{ch} {value}", values=ON_OFF, parse=parse_bool, doc="Output on/off."
    )
    # :OUTPut[c]:ON:AUTO (B2960 Ed. 6 p. 4-67)
    auto_output_on = setting(
        ":OUTP{ch}:ON:AUTO {value}", values=ON_OFF, doc="Output turned on by a measurement."
    )
    # :MEASure:<CURRent[:DC]|VOLTage[:DC]>? [chanlist] (B2900 Ed. 2 p. 4-45): a channel list
    voltage = measurement(":MEAS:VOLT? (@{ch})", units="V", doc="Measured voltage.")
    current = measurement(":MEAS:CURR? (@{ch})", units="A", doc="Measured current.")
    # :SENSe[c]:<CURRent[:DC]|VOLTage[:DC]>:PROTection:TRIPped? (B2960 Ed. 6 p. 4-91): the
    # channel is the header suffix and the query takes NO channel list; the reply is 1 or 0
    current_limit_tripped = measurement(
        ":SENS{ch}:CURR:PROT:TRIP?", parse=parse_bool, doc="Current compliance reached."
    )
    voltage_limit_tripped = measurement(
        ":SENS{ch}:VOLT:PROT:TRIP?", parse=parse_bool, doc="Voltage compliance reached."
    )

    def in_compliance(self) -> bool:
        """Whether current or voltage compliance is reached."""
        with self.lock:
            return self.current_limit_tripped or self.voltage_limit_tripped


class KeysightB2900(Smu):
    """Keysight B2900-series SMU; channels ``'1'`` (and ``'2'``)."""

    models = MODELS
    channel_class = KeysightB2900Channel
    # *RST (outputs off, defaults) and *CLS (empty error queue): IEEE 488.2 common commands.
    # Trigger count 1 on every channel: :TRIGger[c]<:ACQuire|:TRANsient|[:ALL]>:COUNt, the
    # subsystem form B2900 Ed. 2 p. 4-93 cites for :SOURce; the COUNt page itself was not
    # read (NOT confirmed). A refused command fails the arming (error queue), never silently.
    reset_commands = ("*RST", "*CLS", ":TRIG{ch}:ALL:COUN 1")

    def configure(self) -> None:
        """Turn automatic output-on off on every channel."""
        with self.lock:
            for name in self.channels:
                channel = self[name]
                assert isinstance(channel, KeysightB2900Channel)
                channel.auto_output_on = False
