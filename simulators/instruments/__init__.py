"""Emulated lab instruments reachable over loopback TCP, for tests and the emulated bench.

:mod:`simulators.instruments.smu_server` emulates source-measure units (Keithley 2400 and
2636B, Keysight B2902A) behind ``TCPIP::127.0.0.1::<port>::SOCKET``.
"""

from .smu_server import EMULATED_MODELS, ResistorBackend, SmuBackend, SmuServer

__all__ = ["EMULATED_MODELS", "ResistorBackend", "SmuBackend", "SmuServer"]
