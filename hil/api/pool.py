"""The server's benches: one slot per bench config, each with its guard, lease and run.

The pool owns the benches: it builds them at startup (:func:`hil.composition.build_bench`,
or a factory a test passes) and puts every one in its safe state and closes it at shutdown.
Runs and manual operations get the slot's :class:`~hil.api.guard.GuardedBench`, never the
bench itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hil.api.errors import UnknownResource
from hil.api.guard import GuardedBench, guard
from hil.api.leases import Lease, LeaseKeeper
from hil.bench import Bench, SafeStateReport
from hil.config import RunConfig, load_config
from hil.errors import ConfigError, InUseError

log = logging.getLogger(__name__)

#: How long a manual operation waits for the one before it on the same bench (s).
OPERATION_WAIT_S = 60.0

BenchFactory = Callable[[RunConfig], Bench]


class Stoppable(Protocol):
    """What the emergency stop needs of a run (:class:`hil.run.Run` is one)."""

    def request_stop(self) -> None:
        """Stop at the next step boundary."""
        ...


@dataclass(frozen=True)
class EStopOutcome:
    """What an emergency stop did.

    Attributes
    ----------
    bench_id : str
    report : SafeStateReport
        What the bench confirmed.
    run_id : str or None
        The run told to stop (it ends ``stopped``, its last checkpoint kept).
    revoked : str or None
        The holder whose lease the stop ended.
    """

    bench_id: str
    report: SafeStateReport
    run_id: str | None
    revoked: str | None


class BenchSlot:
    """One bench of the server and everything about it.

    Parameters
    ----------
    bench_id : str
    config : RunConfig
        The config the bench was built from (its network and bench sections are what runs on
        it must use).
    bench : Bench
    """

    def __init__(self, bench_id: str, config: RunConfig, bench: Bench) -> None:
        self.id = bench_id
        self.config = config
        self.bench = bench
        self.guard: GuardedBench = guard(bench, bench_id)
        self.leases = LeaseKeeper(bench_id)
        self.run_id: str | None = None
        self._run: Stoppable | None = None
        self._operations = threading.Lock()

    @contextmanager
    def operate(self, token: str | None) -> Iterator[GuardedBench]:
        """A manual operation by the lease holder: one at a time, lease checked inside.

        Raises
        ------
        InUseError
            ``token`` is not the lease in force (naming the holder), or another operation
            kept the bench longer than :data:`OPERATION_WAIT_S`.
        """
        if not self._operations.acquire(timeout=OPERATION_WAIT_S):
            raise InUseError(f"bench {self.id} is busy with another operation; nothing was done")
        try:
            self.leases.check(token)
            yield self.guard
        finally:
            self._operations.release()

    @contextmanager
    def idle(self) -> Iterator[GuardedBench]:
        """The bench for a read outside any lease (between a holder's operations; refused
        while a run trains on it)."""
        if self.run_id is not None:
            raise InUseError(f"bench {self.id} is training run {self.run_id}; nothing was done")
        with self._operations:
            yield self.guard

    # --- leases ---------------------------------------------------------------------------
    def take_lease(self, holder: str, ttl_s: float) -> Lease:
        """Lease the bench to a person; a new lease clears an emergency stop."""
        lease = self.leases.acquire(holder, ttl_s)
        self.guard.clear()
        log.info("bench %s leased to %r for %g s", self.id, holder, ttl_s)
        return lease

    def end_lease(self, lease: Lease | None, why: str) -> None:
        """After a lease ended (released, broken, expired): the bench goes to its safe state."""
        if lease is None:
            return
        report = self.guard.safe_state()
        log.info("bench %s: lease of %r %s; %s", self.id, lease.holder, why, report.words())

    def expire_lease(self) -> None:
        """Drop an expired lease and make the bench safe."""
        self.end_lease(self.leases.expire(), "expired")

    # --- runs -------------------------------------------------------------------------------
    def attach_run(self, run_id: str, run: Stoppable, token: str | None = None) -> None:
        """Give the bench to a run (a lease until it ends); clears an emergency stop.

        Raises
        ------
        InUseError
            The bench is leased to someone else (``token`` passes the caller's own lease on).
        """
        self.leases.acquire_for_run(run_id, token)
        self.guard.clear()
        self._run, self.run_id = run, run_id

    def detach_run(self, run_id: str) -> None:
        """The run ended: the bench is free again."""
        if self.run_id == run_id:
            self._run, self.run_id = None, None
        self.leases.release_run(run_id)

    # --- the emergency stop -----------------------------------------------------------------
    def estop(self, by: str) -> EStopOutcome:
        """Refuse every operation, stop the bench's run, put the bench in its safe state and
        end a person's lease. Takes no lock a run or an operation holds, so nothing they do
        delays it; idempotent."""
        self.guard.trip(by)
        run, run_id = self._run, self.run_id
        if run is not None:
            run.request_stop()
        report = self.guard.safe_state()
        revoked = self.leases.revoke()
        level = logging.WARNING if report.confirmed else logging.ERROR
        log.log(level, "bench %s: emergency stop by %s; %s", self.id, by, report.words())
        return EStopOutcome(self.id, report, run_id, None if revoked is None else revoked.holder)


class BenchPool:
    """The benches of a server, by id.

    Parameters
    ----------
    slots : sequence of BenchSlot
    """

    def __init__(self, slots: Sequence[BenchSlot]) -> None:
        self._slots = {s.id: s for s in slots}
        self._closed = False
        self._lock = threading.Lock()

    @classmethod
    def build(cls, configs: Sequence[RunConfig], factory: BenchFactory) -> BenchPool:
        """Build the bench of every config; a failure closes the ones already built."""
        slots: list[BenchSlot] = []
        try:
            for config in configs:
                slots.append(BenchSlot(config.name, config, factory(config)))
                log.info("bench %s: %s", config.name, slots[-1].guard.network.describe())
        except BaseException:
            cls(slots).close()
            raise
        return cls(slots)

    def get(self, bench_id: str) -> BenchSlot:
        """The slot of a bench; UnknownResource naming the ids there are."""
        slot = self._slots.get(bench_id)
        if slot is None:
            raise UnknownResource(
                f"no bench {bench_id!r} on this server (benches: {', '.join(self._slots)})"
            )
        return slot

    def __iter__(self) -> Iterator[BenchSlot]:
        return iter(list(self._slots.values()))

    def __len__(self) -> int:
        return len(self._slots)

    def expire_leases(self) -> None:
        """Make the bench of every expired lease safe."""
        for slot in self:
            slot.expire_lease()

    def estop_all(self, by: str) -> None:
        """The emergency stop of every bench."""
        for slot in self:
            slot.estop(by)

    def close(self) -> dict[str, SafeStateReport]:
        """Safe state and close every bench, whatever fails (idempotent); the reports."""
        with self._lock:
            if self._closed:
                return {}
            self._closed = True
        reports: dict[str, SafeStateReport] = {}
        for slot in self:
            try:
                reports[slot.id] = slot.guard.safe_state()
            except Exception as exc:  # safe_state should never raise; close the rest anyway
                reports[slot.id] = SafeStateReport((f"{slot.id} ({exc})",))
            try:
                slot.bench.close()
            except Exception as exc:
                log.error("bench %s did not close cleanly: %s", slot.id, exc)
            report = reports[slot.id]
            log.log(
                logging.INFO if report.confirmed else logging.ERROR,
                "bench %s closed: %s",
                slot.id,
                report.words(),
            )
        return reports


def load_bench_configs(refs: Sequence[str | Path | RunConfig]) -> list[RunConfig]:
    """The validated configs of a server's benches (paths, shipped names or configs).

    Raises
    ------
    ConfigError
        A config is invalid, or two share a ``name`` (a bench's id).
    """
    if not refs:
        raise ConfigError("a server needs at least one bench config")
    configs = [r if isinstance(r, RunConfig) else load_config(r) for r in refs]
    names = [c.name for c in configs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(
            f"bench ids must differ, but {', '.join(twice)} names more than one config "
            "(a bench's id is its config's `name`)"
        )
    return configs
