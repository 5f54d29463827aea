"""The physics behind an emulated SMU: what a channel measures given its source settings.

An :class:`~simulators.instruments.smu_server.SmuServer` keeps each channel's source settings
and asks a :class:`SmuBackend` what the channel would measure. :class:`ResistorBackend` (one
resistor per channel) is the built-in one; the emulated lab's backend is a simulated
crossbar (:class:`~simulators.instruments.crossbar_backends.CrossbarSmuBackend`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from hil.vocabulary import SourceMode


class SmuBackend(Protocol):
    """Physics behind an emulated SMU: what a channel measures given its source settings."""

    def measure(
        self,
        channel: str,
        source_mode: SourceMode,
        level: float,
        compliance: float,
        output_on: bool,
    ) -> tuple[float, float]:
        """Return (voltage [V], current [A]) at ``channel``.

        Parameters
        ----------
        channel : str
            Channel name ('1', 'smua', ...).
        source_mode : {'voltage', 'current'}
            What the channel sources.
        level : float
            Source level [V or A, following ``source_mode``].
        compliance : float
            Compliance [A when sourcing voltage, V when sourcing current], > 0.
        output_on : bool
            Whether the output relay is closed.
        """
        ...


@dataclass
class ResistorBackend:
    """One resistor from each channel to ground, clipped at compliance.

    Parameters
    ----------
    resistance : float or Mapping[str, float]
        Load resistance [ohm], one for all channels or one per channel name.
    """

    resistance: float | Mapping[str, float] = 1e3

    def measure(
        self,
        channel: str,
        source_mode: SourceMode,
        level: float,
        compliance: float,
        output_on: bool,
    ) -> tuple[float, float]:
        """Return (V, I) with V = I R; a source beyond compliance is clipped to it."""
        if not output_on:
            return 0.0, 0.0
        r = self.resistance[channel] if isinstance(self.resistance, Mapping) else self.resistance
        if source_mode == "voltage":
            current = level / r
            if abs(current) > compliance:
                current = math.copysign(compliance, current)
            return current * r, current
        voltage = level * r
        if abs(voltage) > compliance:
            voltage = math.copysign(compliance, voltage)
        return voltage, voltage / r
