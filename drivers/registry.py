"""The driver registry: every driver name a lab config may use, mapped to its class.

The names are :mod:`hil.vocabulary`'s ``SmuDriverName`` and ``BoardDriverName``; a config
schema validates them there, and the lab bench looks their classes up here, so a new driver is
one line in the vocabulary and one here (a test checks the two agree).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from hil.vocabulary import BoardDriverName, DriverName, SmuDriverName

from .keithley2400 import Keithley2400
from .keithley2450 import Keithley2450
from .keithley2600 import Keithley2600
from .keysight_b2900 import KeysightB2900
from .serial_board import SerialBoard
from .smu import Smu

#: SMU driver name in a config -> driver class.
SMU_DRIVER_CLASSES: Mapping[SmuDriverName, type[Smu]] = MappingProxyType(
    {
        "keithley2400": Keithley2400,
        "keithley2450": Keithley2450,
        "keithley2600": Keithley2600,
        "keysight_b2900": KeysightB2900,
    }
)

#: Board driver name in a config -> driver class.
BOARD_DRIVER_CLASSES: Mapping[BoardDriverName, type[SerialBoard]] = MappingProxyType(
    {"serial_board": SerialBoard}
)


def smu_driver(name: DriverName) -> type[Smu]:
    """The SMU driver class of a config's ``driver`` name.

    Raises
    ------
    KeyError
        ``name`` is a board driver.
    """
    try:
        return SMU_DRIVER_CLASSES[name]  # type: ignore[index]
    except KeyError:
        raise KeyError(f"{name!r} is not an SMU driver: {', '.join(SMU_DRIVER_CLASSES)}") from None


def board_driver(name: DriverName) -> type[SerialBoard]:
    """The board driver class of a config's ``driver`` name.

    Raises
    ------
    KeyError
        ``name`` is an SMU driver.
    """
    try:
        return BOARD_DRIVER_CLASSES[name]  # type: ignore[index]
    except KeyError:
        raise KeyError(
            f"{name!r} is not a board driver: {', '.join(BOARD_DRIVER_CLASSES)}"
        ) from None
