"""Errors raised across the project: one shallow hierarchy, mapped to HTTP codes by the API.

Every error says what was wrong in words a user at a bench can act on: the field or the
instrument, the value, and the limit or the reason.
"""

from __future__ import annotations


class HilError(Exception):
    """Base class of every error this project raises on purpose."""


class ConfigError(HilError, ValueError):
    """A config or spec is invalid; raised before anything touches a bench."""


class SafetyError(HilError, ValueError):
    """A request would exceed a safety limit; nothing was applied to the bench."""


class ConvergenceError(HilError, RuntimeError):
    """A circuit solve did not reach equilibrium (names the sample and the residual)."""


class EngineUnavailable(HilError, RuntimeError):
    """A simulation engine cannot be loaded (e.g. the ngspice shared library is missing)."""


class SimulationError(HilError, RuntimeError):
    """A simulator rejected the circuit or failed while solving it."""


class InstrumentError(HilError, RuntimeError):
    """An instrument timed out, disconnected, reported an error or tripped compliance.

    Parameters
    ----------
    instrument : str
        Name of the instrument in the bench config (or its resource address).
    command : str
        The command being executed when the fault happened ('' when none).
    reason : str
        What went wrong, in the instrument's own words where it gave any.
    """

    def __init__(self, instrument: str, command: str, reason: str) -> None:
        self.instrument = instrument
        self.command = command
        self.reason = reason
        where = f" during {command!r}" if command else ""
        super().__init__(f"{instrument}{where}: {reason}")


class InUseError(HilError, RuntimeError):
    """A run, a bench or an instrument is held by another process or client; nothing was
    touched. The message names the holder (``in use by PID 1234 since ...``)."""


class EmergencyStop(HilError, RuntimeError):
    """The bench was put in its safe state by an emergency stop; it refuses operations
    until the stop is cleared. A run that meets it ends ``stopped`` (checkpoint kept)."""


class StoreError(HilError, RuntimeError):
    """The run store's database failed (disk full, read-only folder); names the file."""
