"""Emulated lab instruments, for tests and the emulated lab bench.

- :mod:`~simulators.instruments.smu_server`: source-measure units (Keithley 2400, 2450 and
  2636B, Keysight B2902A) behind ``TCPIP::127.0.0.1::<port>::SOCKET``; the instrument's state in
  :mod:`~simulators.instruments.smu_models`, its languages in
  :mod:`~simulators.instruments.scpi_dialects` and :mod:`~simulators.instruments.tsp_interpreter`,
  its physics in :mod:`~simulators.instruments.smu_backends`;
- :mod:`~simulators.instruments.board_server`: the XBAR DAC/ADC and crossbar board on a pty
  (protocol versions 1 and 2); its firmware in
  :mod:`~simulators.instruments.board_firmware`, its version-2 frames in
  :mod:`~simulators.instruments.board_framing`, its physics contract in
  :mod:`~simulators.instruments.board_backends`;
- :mod:`~simulators.instruments.crossbar_backends`: their physics, one simulated crossbar
  shared by every instrument;
- :mod:`~simulators.instruments.emulated_lab`: every instrument of a lab config, started and
  wired together.
"""

from .board_server import BoardBackend, BoardServer, BoardSpec, LinearBackend
from .crossbar_backends import (
    BoardState,
    CrossbarBoardBackend,
    CrossbarCircuit,
    CrossbarSmuBackend,
    CrossbarSmuServer,
    EmulatorLimit,
)
from .emulated_lab import EmulatedLab
from .smu_backends import ResistorBackend, SmuBackend
from .smu_models import EMULATED_MODELS
from .smu_server import SmuServer

__all__ = [
    "EMULATED_MODELS",
    "BoardBackend",
    "BoardServer",
    "BoardSpec",
    "BoardState",
    "CrossbarBoardBackend",
    "CrossbarCircuit",
    "CrossbarSmuBackend",
    "CrossbarSmuServer",
    "EmulatedLab",
    "EmulatorLimit",
    "LinearBackend",
    "ResistorBackend",
    "SmuBackend",
    "SmuServer",
]
