"""Bench leases, after the lock services of OPC UA and SiLA 2.

One holder at a time per bench: a person (a dashboard user) for a bounded time to live, or
a run for as long as it trains. The lease token is the holder's capability: manual
operations send it back (``X-Lease-Token``), compared in constant time. A lease that is not
renewed expires; the server then puts the bench in its safe state. Reads never need a lease.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hil.errors import InUseError


@dataclass(frozen=True)
class Lease:
    """Who holds a bench.

    Attributes
    ----------
    holder : str
        A person's name as they gave it, or ``run RUN_ID``.
    token : str
        The capability sent back with each operation (not in ``repr``).
    expires_at : float or None
        On the keeper's clock (monotonic s); None for a run's lease (it ends with the run).
    run_id : str or None
        The run holding the bench, if a run does.
    """

    holder: str
    token: str = field(repr=False)
    expires_at: float | None = None
    run_id: str | None = None


class LeaseKeeper:
    """The lease of one bench (thread-safe).

    Parameters
    ----------
    bench_id : str
    clock : callable
        Monotonic seconds (tests pass a fake one).
    """

    def __init__(self, bench_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.bench_id = bench_id
        self.clock = clock
        self._lease: Lease | None = None
        self._lock = threading.Lock()

    # --- reading ----------------------------------------------------------------------------
    def current(self) -> Lease | None:
        """The lease in force (an expired one is None)."""
        with self._lock:
            return self._live()

    def remaining_s(self, lease: Lease) -> float | None:
        """Seconds until ``lease`` expires (None for a run's lease)."""
        return None if lease.expires_at is None else max(0.0, lease.expires_at - self.clock())

    def _live(self) -> Lease | None:
        lease = self._lease
        if lease is not None and lease.expires_at is not None and lease.expires_at <= self.clock():
            return None
        return lease

    def _busy(self, lease: Lease) -> InUseError:
        if lease.run_id is not None:
            return InUseError(
                f"bench {self.bench_id} is training run {lease.run_id} (the run holds its "
                f"lease until it ends; stop it with POST /runs/{lease.run_id}/stop); "
                "nothing was done"
            )
        left = self.remaining_s(lease) or 0.0
        return InUseError(
            f"bench {self.bench_id} is leased by {lease.holder!r} for another {left:.0f} s; "
            "nothing was done"
        )

    def _matches(self, lease: Lease, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(
            lease.token.encode(), token.encode("utf-8", "surrogateescape")
        )

    # --- a person's lease ---------------------------------------------------------------------
    def acquire(self, holder: str, ttl_s: float) -> Lease:
        """Lease the bench to ``holder`` for ``ttl_s`` seconds.

        Raises
        ------
        InUseError
            Someone else (a person or a run) holds it; the message names them.
        """
        with self._lock:
            held = self._live()
            if held is not None:
                raise self._busy(held)
            self._lease = Lease(holder, secrets.token_urlsafe(24), self.clock() + ttl_s)
            return self._lease

    def _refusal(self, held: Lease | None) -> InUseError:
        if held is None:
            return InUseError(
                f"bench {self.bench_id} is not leased to you: take a lease first "
                f"(POST /benches/{self.bench_id}/lease); nothing was done"
            )
        return self._busy(held)

    def _holds(self, held: Lease | None, token: str | None) -> bool:
        return held is not None and held.run_id is None and self._matches(held, token)

    def check(self, token: str | None) -> Lease:
        """The lease ``token`` belongs to; InUseError naming the holder otherwise."""
        with self._lock:
            held = self._live()
            if held is not None and self._holds(held, token):
                return held
            raise self._refusal(held)

    def renew(self, token: str | None, ttl_s: float) -> Lease:
        """Extend the caller's lease to ``ttl_s`` seconds from now (InUseError as
        :meth:`check`)."""
        with self._lock:
            held = self._live()
            if held is not None and self._holds(held, token):
                self._lease = Lease(held.holder, held.token, self.clock() + ttl_s)
                return self._lease
            raise self._refusal(held)

    def release(self, token: str | None) -> Lease | None:
        """End the caller's lease; returns it (None when the bench was not leased at all).

        Raises
        ------
        InUseError
            Someone else holds the bench (or a run does).
        """
        with self._lock:
            held = self._live()
            if held is None:
                self._lease = None
                return None
            if self._holds(held, token):
                self._lease = None
                return held
            raise self._busy(held)

    def revoke(self) -> Lease | None:
        """End a person's lease whoever holds it (an admin's break, the emergency stop);
        returns it. A run's lease is kept: it ends with the run."""
        with self._lock:
            held = self._live()
            if held is not None and held.run_id is not None:
                return None
            self._lease = None
            return held

    def break_(self) -> Lease | None:
        """An admin's break: :meth:`revoke`, but InUseError for a run's lease (stop the run,
        or press the emergency stop, instead)."""
        with self._lock:
            held = self._live()
            if held is not None and held.run_id is not None:
                raise self._busy(held)
            self._lease = None
            return held

    def expire(self) -> Lease | None:
        """Drop a lease whose time ran out; returns it (None when nothing expired)."""
        with self._lock:
            lease = self._lease
            if lease is not None and self._live() is None:
                self._lease = None
                return lease
            return None

    # --- a run's lease ------------------------------------------------------------------------
    def acquire_for_run(self, run_id: str, token: str | None = None) -> Lease:
        """Lease the bench to a run until it ends; a person's lease passes to the run when
        ``token`` is theirs.

        Raises
        ------
        InUseError
            Someone else holds the bench.
        """
        with self._lock:
            held = self._live()
            if held is not None and (held.run_id is not None or not self._matches(held, token)):
                raise self._busy(held)
            self._lease = Lease(f"run {run_id}", secrets.token_urlsafe(24), None, run_id)
            return self._lease

    def release_run(self, run_id: str) -> None:
        """End the lease of ``run_id`` (nothing when another holds the bench)."""
        with self._lock:
            if self._lease is not None and self._lease.run_id == run_id:
                self._lease = None
