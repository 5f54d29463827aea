"""Keithley 2600B-series System SourceMeter (TSP, channels 'smua' and 'smub').

References
----------
Keithley, *Series 2600B System SourceMeter Instrument Reference Manual* (2600BS-901-01):
Rev. F (August 2021) section 9 "TSP command reference" and Rev. B (May 2013) section 7, the
same command reference. Page numbers below are Rev. F's ("9-244") or Rev. B's ("7-142").

Notes
-----
TSP prints numbers as ``1.00000e+00`` and booleans as ``true``/``false``;
``print(errorqueue.next())`` prints code, message, severity and node separated by tabs.
Prompts are switched off on reset (``localnode.prompts = 0``, Rev. B p. 7-142): with prompts
on, every command would be answered ``TSP>``, input no query asked for.
"""

from __future__ import annotations

from typing import Any

from .instrument import control, measurement, parse_bool
from .smu import (
    CURRENT_LEVEL,
    CURRENT_LIMIT,
    ON_OFF,
    VOLTAGE_LEVEL,
    VOLTAGE_LIMIT,
    ErrorEntry,
    Smu,
    SmuChannel,
    SmuLimits,
)

_A, _AB = ("smua",), ("smua", "smub")
# smuX.source.limitY, Rev. F p. 9-244 (Rev. B p. 7-223/7-224): voltage compliance 10 mV to
# 40 V (2601B, 2602B, 2604B), 20 mV to 200 V (2611B, 2612B, 2614B, 2634B, 2635B, 2636B);
# current compliance 10 nA to 3 A (2601B-2614B), 100 pA to 1.5 A (2634B-2636B).
# The source level maxima are taken equal to the compliance maxima (40 V / 3 A, 200 V /
# 1.5 A): the Rev. F smuX.source.levelY page read gives no range, the Series 2600 (non-B)
# manual 2600S-901-01 Rev. A p. 12-88 gives +-40 V / +-3 A (2601/2602) and +-200 V / +-1.5 A
# (2611/2612); not confirmed for the B models.
_LOW = {"max_voltage": 40.0, "max_current": 3.0, "min_voltage_limit": 10e-3}  # 260xB
_HIGH = {"max_voltage": 200.0, "max_current": 1.5, "min_voltage_limit": 20e-3}  # 261xB, 263xB
_NA, _PA = {"min_current_limit": 10e-9}, {"min_current_limit": 100e-12}
MODELS: dict[str, SmuLimits] = {
    "2601B": SmuLimits(_A, **_LOW, **_NA),
    "2602B": SmuLimits(_AB, **_LOW, **_NA),
    "2604B": SmuLimits(_AB, **_LOW, **_NA),
    "2611B": SmuLimits(_A, **_HIGH, **_NA),
    "2612B": SmuLimits(_AB, **_HIGH, **_NA),
    "2614B": SmuLimits(_AB, **_HIGH, **_NA),
    "2634B": SmuLimits(_AB, **_HIGH, **_PA),
    "2635B": SmuLimits(_A, **_HIGH, **_PA),
    "2636B": SmuLimits(_AB, **_HIGH, **_PA),
}


def parse_tsp_error(reply: str) -> ErrorEntry:
    """Parse ``print(errorqueue.next())``: code, message, severity, node, tab-separated."""
    fields = reply.split("\t")
    if len(fields) != 4:
        raise ValueError(f"{reply!r} is not code, message, severity, node")
    return ErrorEntry(int(float(fields[0])), fields[1].strip())


def parse_source_func(reply: str) -> str:
    """Parse ``print(smuX.source.func)``: 1 is OUTPUT_DCVOLTS, 0 is OUTPUT_DCAMPS."""
    value = float(reply)
    if value not in (0.0, 1.0):
        raise ValueError(f"{reply!r} is not a source function")
    return "voltage" if value == 1.0 else "current"


def parse_count(reply: str) -> int:
    """Parse ``print(errorqueue.count)``: a non-negative whole number."""
    value = float(reply)
    if value != int(value) or value < 0:
        raise ValueError(f"{reply!r} is not a count")
    return int(value)


class Keithley2600Channel(SmuChannel):
    """One channel (``smua`` or ``smub``) of a 2600B-series SourceMeter."""

    # smuX.source.func, Rev. F p. 9-242: smuX.OUTPUT_DCVOLTS | smuX.OUTPUT_DCAMPS
    source_mode = control(
        "print({ch}.source.func)",
        "{ch}.source.func = {ch}.OUTPUT_{value}",
        values={"voltage": "DCVOLTS", "current": "DCAMPS"},
        parse=parse_source_func,
        doc="Source function, 'voltage' or 'current'.",
    )
    # smuX.source.levelY, Rev. F p. 9-243/9-244 (reset() sets both to 0)
    voltage_setpoint = control(
        "print({ch}.source.levelv)",
        "{ch}.source.levelv = {value}",
        validator=VOLTAGE_LEVEL,
        units="V",
        doc="Source voltage level.",
    )
    current_setpoint = control(
        "print({ch}.source.leveli)",
        "{ch}.source.leveli = {value}",
        validator=CURRENT_LEVEL,
        units="A",
        doc="Source current level.",
    )
    # smuX.source.limitY, Rev. F p. 9-244
    current_limit = control(
        "print({ch}.source.limiti)",
        "{ch}.source.limiti = {value}",
        validator=CURRENT_LIMIT,
        units="A",
        doc="Current compliance.",
    )
    voltage_limit = control(
        "print({ch}.source.limitv)",
        "{ch}.source.limitv = {value}",
        validator=VOLTAGE_LIMIT,
        units="V",
        doc="Voltage compliance.",
    )
    # smuX.source.output, Rev. F p. 9-249: smuX.OUTPUT_ON | smuX.OUTPUT_OFF
    output_enabled = control(
        "print({ch}.source.output)",
        "{ch}.source.output = {ch}.OUTPUT_{value}",
        values=ON_OFF,
        parse=parse_bool,
        doc="Output on/off.",
    )
    # smuX.measure.Y(), Rev. F section 9 (smuX.measure.v(), smuX.measure.i())
    voltage = measurement("print({ch}.measure.v())", units="V", doc="Measured voltage.")
    current = measurement("print({ch}.measure.i())", units="A", doc="Measured current.")
    # smuX.source.compliance, Rev. F p. 9-240: true when the source is limited
    compliance_tripped = measurement(
        "print({ch}.source.compliance)", parse=parse_bool, doc="Compliance reached."
    )

    def in_compliance(self) -> bool:
        """Whether the channel is in compliance (``smuX.source.compliance``)."""
        return self.compliance_tripped


class Keithley2600(Smu):
    """Keithley 2600B-series SourceMeter; channels ``'smua'`` (and ``'smub'``)."""

    models = MODELS
    channel_class = Keithley2600Channel
    sync_reply_unique = True  # print("hil-sync N"), N new every time
    # localnode.prompts = 0 (Rev. B p. 7-142) first, so that none of what follows is answered
    # with a prompt; reset() returns both channels to their defaults with the outputs off
    # (Rev. F section 9, reset()); errorqueue.clear() empties the error queue.
    reset_commands = ("localnode.prompts = 0", "reset()", "errorqueue.clear()")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_serial = 0

    error_count = measurement(
        "print(errorqueue.count)", parse=parse_count, doc="Number of entries in the error queue."
    )
    next_error = measurement(
        "print(errorqueue.next())", parse=parse_tsp_error, doc="Oldest error queue entry."
    )

    def errors(self, max_entries: int = 100) -> list[ErrorEntry]:
        """Read the TSP error queue until ``errorqueue.count`` is 0."""
        entries: list[ErrorEntry] = []
        with self.lock:
            while len(entries) < max_entries and self.error_count > 0:
                entries.append(self.next_error)
        return entries

    def sync_query(self) -> tuple[str, str] | None:
        """``print("hil-sync N")`` and its reply, N counting this driver's resynchronisations:
        TSP prints a string back as it is, so each one waits for a token no earlier reply
        can carry."""
        self._sync_serial += 1
        token = f"hil-sync {self._sync_serial}"
        return f'print("{token}")', token
