"""Instrument drivers: a declarative base (:mod:`drivers.instrument`) and SMU families.

Import a driver from its module or from here::

    from drivers import Keithley2400, Keithley2600, KeysightB2900, Reading
"""

from .instrument import Channel, Instrument, OneOf, Range, control, measurement, setting
from .keithley2400 import Keithley2400
from .keithley2600 import Keithley2600
from .keysight_b2900 import KeysightB2900
from .smu import ErrorEntry, Reading, Smu, SmuChannel, SmuLimits

__all__ = [
    "Channel",
    "ErrorEntry",
    "Instrument",
    "Keithley2400",
    "Keithley2600",
    "KeysightB2900",
    "OneOf",
    "Range",
    "Reading",
    "Smu",
    "SmuChannel",
    "SmuLimits",
    "control",
    "measurement",
    "setting",
]
