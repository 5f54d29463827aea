"""Instrument drivers: a declarative base (:mod:`drivers.instrument`) and SMU families.

Import a driver from its module or from here::

    from drivers import Keithley2400, Keithley2600, KeysightB2900, Reading

The lab bench (:class:`LabBench`) assembles a board and SMUs into a :class:`hil.bench.Bench`.
"""

from .instrument import Channel, Instrument, OneOf, Range, control, measurement, setting
from .keithley2400 import Keithley2400
from .keithley2600 import Keithley2600
from .keysight_b2900 import KeysightB2900
from .lab_bench import CheckRow, LabBench
from .serial_board import SerialBoard
from .smu import ErrorEntry, Reading, Smu, SmuChannel, SmuLimits

__all__ = [
    "Channel",
    "CheckRow",
    "ErrorEntry",
    "Instrument",
    "Keithley2400",
    "Keithley2600",
    "KeysightB2900",
    "LabBench",
    "OneOf",
    "Range",
    "Reading",
    "Smu",
    "SmuChannel",
    "SerialBoard",
    "SmuLimits",
    "control",
    "measurement",
    "setting",
]
