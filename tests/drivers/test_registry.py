"""The driver registry names exactly the vocabulary's drivers, each with its class."""

from __future__ import annotations

from typing import get_args

import pytest

from drivers import Keithley2400, Keithley2600, KeysightB2900, SerialBoard, Smu
from drivers.keithley2450 import Keithley2450
from drivers.registry import BOARD_DRIVER_CLASSES, SMU_DRIVER_CLASSES, board_driver, smu_driver
from hil.vocabulary import BOARD_DRIVERS, SMU_DRIVERS, SourceMode


def test_registry_keys_are_the_vocabulary_driver_names() -> None:
    assert tuple(SMU_DRIVER_CLASSES) == SMU_DRIVERS
    assert tuple(BOARD_DRIVER_CLASSES) == BOARD_DRIVERS


def test_each_name_maps_to_its_driver_class() -> None:
    assert smu_driver("keithley2400") is Keithley2400
    assert smu_driver("keithley2450") is Keithley2450
    assert smu_driver("keithley2600") is Keithley2600
    assert smu_driver("keysight_b2900") is KeysightB2900
    assert board_driver("serial_board") is SerialBoard
    assert all(issubclass(cls, Smu) for cls in SMU_DRIVER_CLASSES.values())


def test_a_name_of_the_other_kind_is_refused() -> None:
    with pytest.raises(KeyError, match="'serial_board' is not an SMU driver"):
        smu_driver("serial_board")
    with pytest.raises(KeyError, match="'keithley2400' is not a board driver"):
        board_driver("keithley2400")


@pytest.mark.parametrize("driver", list(SMU_DRIVER_CLASSES.values()), ids=SMU_DRIVERS)
def test_every_smu_family_sources_the_vocabulary_modes(driver: type[Smu]) -> None:
    quantity = vars(driver.channel_class)["source_mode"]  # the descriptor, not a value
    assert tuple(quantity.values) == get_args(SourceMode)
