"""The emergency-stop guard the server puts around each bench.

Runs and manual operations see the bench only through a :class:`GuardedBench`. Once the
emergency stop is pressed (:meth:`GuardedBench.trip`) every operation raises
:class:`~hil.errors.EmergencyStop` until a new lease or run clears it
(:meth:`GuardedBench.clear`); an operation already under way when the stop comes is followed
by another safe state and raises too, so no caller uses a reading taken across a stop. The
safe state itself is never refused and takes no lock: the stop reaches the bench whatever
another thread is doing with it.
"""

from __future__ import annotations

import threading

import numpy as np

from hil.bench import (
    Bench,
    Measurement,
    PulseCalibration,
    PulseCounting,
    PulseReport,
    PulseRequest,
    SafeStateReport,
    SafetyLimits,
    StatefulBench,
)
from hil.errors import EmergencyStop
from hil.network import Network


class GuardedBench:
    """A bench that refuses every operation after an emergency stop.

    Parameters
    ----------
    bench : Bench
        The bench (owned by the server: :meth:`close` leaves it open).
    bench_id : str
        Its id, for the error messages.

    Attributes
    ----------
    network, limits, calibration
        The bench's (the Bench protocol's attributes).
    armed : bool
        True from an operation that drives the bench until the next safe state.
    last_safe_state : SafeStateReport or None
        What the last safe state confirmed.
    """

    def __init__(self, bench: Bench, bench_id: str) -> None:
        self.inner = bench
        self.bench_id = bench_id
        self.network: Network = bench.network
        self.limits: SafetyLimits = bench.limits
        self.calibration: PulseCalibration = bench.calibration
        self.armed = False
        self.last_safe_state: SafeStateReport | None = None
        self._stopped = threading.Event()
        self._stopped_by = ""

    # --- the emergency stop -------------------------------------------------------------
    @property
    def tripped(self) -> bool:
        """True while the emergency stop holds."""
        return self._stopped.is_set()

    @property
    def stopped_by(self) -> str:
        """Who pressed the emergency stop last ('' when it does not hold)."""
        return self._stopped_by if self.tripped else ""

    def trip(self, by: str) -> None:
        """Refuse every operation from now on (thread-safe, idempotent)."""
        self._stopped_by = by
        self._stopped.set()

    def clear(self) -> None:
        """Allow operations again (a new lease or run does this deliberately)."""
        self._stopped.clear()

    def _check(self, operation: str) -> None:
        if self._stopped.is_set():
            raise EmergencyStop(
                f"bench {self.bench_id} was emergency-stopped by {self._stopped_by}: {operation} "
                "refused, nothing was applied; a new lease or run clears the stop"
            )

    def _after(self, operation: str) -> None:
        # The stop came while the operation ran: its result straddles the stop, and the
        # operation may have driven the bench again after the stop's safe state.
        if self._stopped.is_set():
            self.safe_state()
            raise EmergencyStop(
                f"bench {self.bench_id} was emergency-stopped by {self._stopped_by} during "
                f"{operation}; the bench is in its safe state and the result was discarded"
            )

    # --- operations ---------------------------------------------------------------------
    def settle(self, inputs: np.ndarray, nudges: np.ndarray | None = None) -> Measurement:
        """:meth:`Bench.settle`, unless the emergency stop holds."""
        self._check("settle")
        self.armed = True
        measurement = self.inner.settle(inputs, nudges)
        self._after("settle")
        return measurement

    def pulse(self, request: PulseRequest) -> PulseReport:
        """:meth:`Bench.pulse`, unless the emergency stop holds."""
        self._check("pulse")
        self.armed = True
        report = self.inner.pulse(request)
        self._after("pulse")
        return report

    def read_conductances(self, device_ids: np.ndarray | None = None) -> np.ndarray:
        """:meth:`Bench.read_conductances`, unless the emergency stop holds."""
        self._check("read")
        self.armed = True
        conductances = self.inner.read_conductances(device_ids)
        self._after("read")
        return conductances

    def safe_state(self) -> SafeStateReport:
        """The bench's safe state: never refused, never waits for a lock."""
        report = self.inner.safe_state()
        self.armed = False
        self.last_safe_state = report
        return report

    def close(self) -> None:
        """Safe state only: the server closes the bench itself when it shuts down."""
        self.safe_state()

    @property
    def pulse_counts(self) -> np.ndarray:
        """Pulses delivered to every device (zeros for a bench that does not count)."""
        if isinstance(self.inner, PulseCounting):
            return np.asarray(self.inner.pulse_counts)
        return np.zeros(self.network.n_devices, dtype=np.int64)


class GuardedStatefulBench(GuardedBench):
    """A :class:`GuardedBench` of a bench that saves and restores its device state."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """The device state (a copy held in memory: allowed during a stop)."""
        assert isinstance(self.inner, StatefulBench)
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore a device state, unless the emergency stop holds (it changes the bench)."""
        assert isinstance(self.inner, StatefulBench)
        self._check("restoring a checkpoint")
        self.inner.load_state_dict(state)

    @property
    def restores_devices(self) -> bool:
        """The bench's own answer (see :class:`hil.bench.StatefulBench`)."""
        assert isinstance(self.inner, StatefulBench)
        return self.inner.restores_devices


def guard(bench: Bench, bench_id: str) -> GuardedBench:
    """The guard of ``bench``: stateful when the bench is, so checkpoints keep its devices."""
    if isinstance(bench, StatefulBench):
        return GuardedStatefulBench(bench, bench_id)
    return GuardedBench(bench, bench_id)
