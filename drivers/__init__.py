"""Instrument drivers: a declarative base (:mod:`drivers.instrument`) and SMU families.

Import a driver from its module or from here::

    from drivers import Keithley2400, Keithley2600, KeysightB2900, Reading

The lab bench (:class:`LabBench`) assembles a board and SMUs into a :class:`hil.bench.Bench`;
:func:`check_bench` is ``hil bench check``; :mod:`drivers.registry` maps the config's driver
names to these classes.
"""

from .bench_check import CheckRow, check_bench
from .instrument import Channel, Instrument, OneOf, Range, control, measurement, setting
from .keithley2400 import Keithley2400
from .keithley2450 import Keithley2450
from .keithley2600 import Keithley2600
from .keysight_b2900 import KeysightB2900
from .lab_bench import LabBench
from .lab_ports import HiddenReading, SmuReading
from .registry import BOARD_DRIVER_CLASSES, SMU_DRIVER_CLASSES, board_driver, smu_driver
from .serial_board import AdcReading, SerialBoard
from .smu import ErrorEntry, Reading, Smu, SmuChannel, SmuLimits

__all__ = [
    "BOARD_DRIVER_CLASSES",
    "SMU_DRIVER_CLASSES",
    "AdcReading",
    "Channel",
    "CheckRow",
    "ErrorEntry",
    "HiddenReading",
    "Instrument",
    "Keithley2400",
    "Keithley2450",
    "Keithley2600",
    "KeysightB2900",
    "LabBench",
    "OneOf",
    "Range",
    "Reading",
    "Smu",
    "SerialBoard",
    "SmuChannel",
    "SmuLimits",
    "SmuReading",
    "board_driver",
    "check_bench",
    "control",
    "measurement",
    "setting",
    "smu_driver",
]
