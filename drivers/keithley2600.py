"""Keithley 2600B-series System SourceMeter (TSP, channels 'smua' and 'smub').

Notes
-----
TSP prints numbers as ``1.00000e+00`` and booleans as ``true``/``false``;
``print(errorqueue.next())`` prints code, message, severity and node separated by tabs.
"""

from __future__ import annotations

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
_LOW = {"max_voltage": 40.4, "max_current": 3.03}  # 260xB
_HIGH = {"max_voltage": 202.0, "max_current": 1.515}  # 261xB, 263xB
MODELS: dict[str, SmuLimits] = {
    "2601B": SmuLimits(_A, **_LOW),
    "2602B": SmuLimits(_AB, **_LOW),
    "2604B": SmuLimits(_AB, **_LOW),
    "2611B": SmuLimits(_A, **_HIGH),
    "2612B": SmuLimits(_AB, **_HIGH),
    "2614B": SmuLimits(_AB, **_HIGH),
    "2634B": SmuLimits(_AB, **_HIGH),
    "2635B": SmuLimits(_A, **_HIGH),
    "2636B": SmuLimits(_AB, **_HIGH),
}


def parse_tsp_error(reply: str) -> ErrorEntry:
    """Parse ``print(errorqueue.next())``: code, message, severity, node, tab-separated."""
    fields = reply.split("\t")
    return ErrorEntry(int(float(fields[0])), fields[1].strip())


def parse_source_func(reply: str) -> str:
    """Parse ``print(smuX.source.func)``: 1 is OUTPUT_DCVOLTS, 0 is OUTPUT_DCAMPS."""
    return "voltage" if float(reply) == 1.0 else "current"


class Keithley2600Channel(SmuChannel):
    """One channel (``smua`` or ``smub``) of a 2600B-series SourceMeter."""

    source_mode = control(
        "print({ch}.source.func)",
        "{ch}.source.func = {ch}.OUTPUT_{value}",
        values={"voltage": "DCVOLTS", "current": "DCAMPS"},
        parse=parse_source_func,
        doc="Source function, 'voltage' or 'current'.",
    )
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
    output_enabled = control(
        "print({ch}.source.output)",
        "{ch}.source.output = {ch}.OUTPUT_{value}",
        values=ON_OFF,
        parse=parse_bool,
        doc="Output on/off.",
    )
    voltage = measurement("print({ch}.measure.v())", units="V", doc="Measured voltage.")
    current = measurement("print({ch}.measure.i())", units="A", doc="Measured current.")
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

    error_count = measurement(
        "print(errorqueue.count)",
        parse=lambda reply: int(float(reply)),
        doc="Number of entries in the error queue.",
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

    def reset(self) -> None:
        """Reset both channels to their defaults (output off) with TSP ``reset()``."""
        with self.lock:
            self.write("reset()")
            self.configure()
