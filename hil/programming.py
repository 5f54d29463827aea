"""Turn desired conductance changes into programming pulses: three strategies.

The trainer asks for ``dG`` per device; a device only moves in steps, so a programmer turns
``dG`` into pulse requests and keeps an estimate of every conductance. Every strategy sees
only the :class:`~hil.bench.Bench` protocol (pulse, read, the nominal step of
``bench.calibration`` and the limits) and returns a :class:`ProgrammingReport` with the
pulses used and the residual error.

``open_loop``
    Pulse counts from the nominal step, rounded stochastically (``E[count * step] = dG``, so
    small updates are not lost on average), never planned past the bounds as far as the
    estimate knows. The estimate follows the nominal steps; it is re-read by ``resync``.
``sign``
    The Manhattan rule: one pulse in the direction of ``dG`` (that is, of the negative
    gradient) on every device where ``|dG|`` exceeds ``threshold`` nominal steps.
``write_verify``
    The programmer keeps a target conductance per device that accumulates every ``dG``
    (clipped to the bounds), so updates smaller than a step are kept, not lost. Devices
    whose target is more than ``threshold`` nominal steps from their estimate are
    programmed: pulse (count from the nominal step), read, compare; a device that did not
    get closer has its amplitude ramped by ``amplitude_step_v`` (up to
    ``amplitude_max_v``), one that overshot goes back to the nominal amplitude; a device
    stops when its read lies within ``tolerance`` of its target (converged) or at
    ``max_iterations`` (not converged, and said so). Reads are batched over the devices
    still being verified. A device that stops at the cap on ``max_failures`` programmings
    in a row (stuck, or its target is beyond its own bounds) is retired: no more pulses, its
    target follows its estimate, and the report says so.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from hil import kernels
from hil.bench import Bench, PulseCalibration, PulseReport, PulseRequest
from hil.errors import SafetyError
from hil.numerics import select
from hil.schema import MAX_COUNT, Schema
from hil.vocabulary import Strategy


class ProgrammingConfig(Schema):
    """How the trainer programs conductance updates (``training.programming``).

    Attributes
    ----------
    strategy : ``"open_loop"``, ``"sign"`` or ``"write_verify"``
        See the module docstring.
    threshold : float
        In nominal steps. ``sign``: pulse a device when ``|dG|`` exceeds it.
        ``write_verify``: program a device when its target is further than this from its
        estimate (smaller errors wait in the target until they grow).
    tolerance : float
        ``write_verify``: a device has converged when ``|target - read| <= tolerance``.
    tolerance_unit : ``"step"`` or ``"range"``
        Unit of ``tolerance``: nominal steps (mean of up and down) or a fraction of
        ``g_max - g_min``.
    max_iterations : int
        ``write_verify``: most pulse-read rounds per call (the iteration cap).
    max_pulses_per_iteration : int
        ``write_verify``: most pulses one device gets per round.
    amplitude_step_v : float
        ``write_verify``: amplitude added (V) after a round where a device did not get at
        least half the expected move closer to its target.
    amplitude_max_v : float or None
        ``write_verify``: highest ramped amplitude (V); None for 1.2 times the bench's
        nominal amplitude. Always within the bench's limits. Under the V/2 scheme an
        amplitude above twice a device's threshold disturbs its half-selected neighbours.
    max_failures : int or None
        ``write_verify``: retire a device after this many programmings in a row that
        stopped at the cap; None never retires.
    """

    strategy: Strategy = "open_loop"
    threshold: float = Field(0.5, ge=0, le=1e6)
    tolerance: float = Field(5.0, gt=0, le=1e6)
    tolerance_unit: Literal["step", "range"] = "step"
    max_iterations: int = Field(10, gt=0, le=10_000)
    max_pulses_per_iteration: int = Field(10, gt=0, le=MAX_COUNT)
    amplitude_step_v: float = Field(0.05, ge=0, le=1e3)
    amplitude_max_v: float | None = Field(None, gt=0, le=1e3)
    max_failures: int | None = Field(3, gt=0, le=MAX_COUNT)


@dataclass(frozen=True)
class PulsePlan:
    """Pulse counts for a set of devices and what the plan had to leave out.

    Attributes
    ----------
    request : PulseRequest
    capped : int
        Devices whose count was limited by the per-request pulse limit.
    """

    request: PulseRequest
    capped: int


@dataclass(frozen=True)
class ProgrammingReport:
    """What one programming call did.

    Attributes
    ----------
    device_ids : ndarray of int, shape (n,)
        Devices whose target changed or that were pulsed.
    residual : ndarray of float, shape (n,)
        ``target - estimate`` after programming (S): measured by the last read for the
        devices write-verify read, otherwise what the programmer's estimate says is left.
    pulses : int
        Pulses delivered (all rounds).
    refused : int
        Pulses the bench refused (e.g. endurance); its notes are in ``notes``.
    capped : int
        Devices whose count was cut by the per-request pulse limit.
    reads : int
        Device reads spent on verification.
    iterations : int
        Pulse-read rounds (write-verify; 0 otherwise).
    converged : ndarray of bool, shape (m,), or None
        Write-verify: for each device of ``verified``, whether its read reached the
        tolerance before the cap; None for strategies that do not verify.
    verified : ndarray of int, shape (m,)
        Devices write-verify programmed (empty otherwise).
    blocked : ndarray of int, shape (k,)
        Verified devices the bench delivered no pulse to (e.g. endurance reached).
    notes : list of str
        The bench's notes and the programmer's (cap reached, refusals).
    """

    device_ids: np.ndarray
    residual: np.ndarray
    pulses: int = 0
    refused: int = 0
    capped: int = 0
    reads: int = 0
    iterations: int = 0
    converged: np.ndarray | None = None
    verified: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    blocked: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    notes: list[str] = field(default_factory=list)

    @property
    def total_pulses(self) -> int:
        """Pulses delivered (same as ``pulses``, the name ``PulseReport`` uses)."""
        return self.pulses

    @property
    def residual_rms(self) -> float:
        """RMS of ``residual`` (S); 0 when no device was addressed."""
        return float(np.sqrt(np.mean(self.residual**2))) if self.residual.size else 0.0

    @property
    def unconverged(self) -> np.ndarray:
        """Ids of the verified devices that stopped at the cap, shape (k,)."""
        if self.converged is None:
            return np.zeros(0, np.int64)
        return self.verified[~self.converged]


def stochastic_round(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Round to an integer below or above, with probabilities that keep the mean exact."""
    low = np.floor(values)
    fraction = values - low
    low += rng.random(values.shape) < fraction  # in place: the same sums, no temporaries
    return low.astype(np.int64)


def plan_open_loop(
    delta_g: np.ndarray,
    g_estimate: np.ndarray,
    g_bounds: tuple[float, float],
    calibration: PulseCalibration,
    max_pulses: int,
    rng: np.random.Generator,
    target_out: np.ndarray | None = None,
) -> PulsePlan:
    """Pulse counts that move each device by ``delta_g`` on average.

    Parameters
    ----------
    delta_g : ndarray, shape (n_devices,)
        Desired change of every conductance (S).
    g_estimate : ndarray, shape (n_devices,)
        The planner's estimate of the present conductances (S).
    g_bounds : (g_min, g_max)
        Bounds (S); no pulse is planned past them.
    calibration : PulseCalibration
        Nominal step per pulse in each direction.
    max_pulses : int
        Most pulses one device may receive in one request (the bench's limit).
    rng : numpy Generator
        For the stochastic rounding (one uniform draw per device).
    target_out : ndarray, shape (n_devices,), optional
        Filled with the conductances the plan aims at, ``clip(g_estimate + delta_g)``
        (S), in the same pass.
    """
    g_min, g_max = g_bounds
    if kernels.active(delta_g.size):  # the same counts from one compiled loop
        draws = rng.random(delta_g.shape)
        steps = (calibration.step_up, calibration.step_down)
        ids, counts, capped = kernels.plan_open_loop(
            delta_g, g_estimate, g_bounds, steps, draws, max_pulses, target_out
        )
        request = PulseRequest(ids, counts, calibration.amplitude_v, calibration.width_s)
        return PulsePlan(request, capped)
    if target_out is not None:
        # np.clip(g + delta_g, g_min, g_max) in place (at paper scale a fresh 1.3 MB
        # temporary costs as much as the arithmetic); its finite values, bit for bit
        np.add(g_estimate, delta_g, out=target_out)
        np.maximum(target_out, g_min, out=target_out)
        np.minimum(target_out, g_max, out=target_out)
    # The signs of an update are a coin toss per device: branch-free selects (the bits of
    # np.where, hil.numerics) and sign products instead of a mispredicted branch each.
    up = delta_g > 0
    if calibration.step_up == calibration.step_down:
        step: np.ndarray | float = calibration.step_up
    else:
        step = select(up, calibration.step_up, calibration.step_down)
    room = select(up, g_max - g_estimate, g_estimate - g_min)
    np.maximum(room, 0.0, out=room)
    magnitude = np.abs(delta_g)
    np.minimum(magnitude, room, out=magnitude)
    np.divide(magnitude, step, out=magnitude)
    counts = stochastic_round(magnitude, rng)
    capped = int(np.count_nonzero(counts > max_pulses))
    if capped:
        np.minimum(counts, max_pulses, out=counts)
    sign = up.astype(np.int64)
    sign *= 2
    sign -= 1
    counts *= sign
    ids = np.flatnonzero(counts != 0)  # nonzero of a bool array has no branch per element
    request = PulseRequest(ids, counts[ids], calibration.amplitude_v, calibration.width_s)
    return PulsePlan(request, capped)


class Programmer(ABC):
    """Common interface of the strategies: ``apply(dG)``, ``resync()``, state for checkpoints.

    Parameters
    ----------
    bench : Bench
    rng : numpy Generator
        For stochastic rounding (open-loop).
    config : ProgrammingConfig, optional

    Attributes
    ----------
    g_estimate : ndarray, shape (n_devices,), or None
        The programmer's estimate of every conductance (S); read on first use.
    capped : int
        Devices whose count the per-request limit cut, since construction.
    """

    strategy: ClassVar[Strategy]

    def __init__(
        self, bench: Bench, rng: np.random.Generator, config: ProgrammingConfig | None = None
    ) -> None:
        self.bench = bench
        self.rng = rng
        self.config = config or ProgrammingConfig(strategy=self.strategy)
        self.g_estimate: np.ndarray | None = None
        self.capped = 0

    def resync(self) -> None:
        """Re-read every conductance (a lab bench pays one read per device for that)."""
        self.g_estimate = self.bench.read_conductances()

    def estimate(self) -> np.ndarray:
        """The estimate of every conductance (S), reading it first if there is none."""
        if self.g_estimate is None:
            self.resync()
        assert self.g_estimate is not None
        return self.g_estimate

    def apply(self, delta_g: np.ndarray) -> ProgrammingReport:
        """Program every device towards ``g + delta_g`` (S, shape (n_devices,)).

        Raises
        ------
        SafetyError
            ``delta_g`` has the wrong shape or holds NaN or infinity (a diverged update):
            it never becomes pulses, and nothing is applied.
        """
        delta_g = np.asarray(delta_g, dtype=float)
        n = self.bench.network.n_devices
        if delta_g.shape != (n,):
            raise SafetyError(
                f"conductance update must have shape ({n},), got {delta_g.shape}; "
                "nothing was applied"
            )
        if not np.all(np.isfinite(delta_g)):
            bad = int(np.count_nonzero(~np.isfinite(delta_g)))
            raise SafetyError(
                f"conductance update holds NaN or infinity for {bad} device(s) (a diverged "
                "gradient: lower the learning rate or beta); nothing was applied"
            )
        return self._apply(delta_g)

    @abstractmethod
    def _apply(self, delta_g: np.ndarray) -> ProgrammingReport:
        """The strategy itself, given a checked, finite update."""

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays to checkpoint (the estimate, and the targets of write-verify)."""
        return {"g_estimate": self.estimate().copy()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self.g_estimate = np.array(state["g_estimate"], dtype=float)

    # --- shared helpers -------------------------------------------------------------------
    def _steps(self, direction: np.ndarray) -> np.ndarray | float:
        """The nominal step (S) in each element's direction; one float when both are equal
        (it broadcasts to the same products, without an array of it)."""
        cal = self.bench.calibration
        if cal.step_up == cal.step_down:
            return float(cal.step_up)
        return select(np.asarray(direction) > 0, cal.step_up, cal.step_down)

    def _follow(
        self,
        report: PulseReport,
        g: np.ndarray,
        residual_of: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Move the estimate ``g`` by the nominal step of every pulse delivered. With
        ``residual_of = (target, delta_g)``: the devices with an update (``delta_g`` not 0)
        and their ``target - g`` after, ``(ids, residual)``."""
        bounds = self.bench.network.g_bounds
        if kernels.active(g.size):  # the same values in two compiled passes
            cal = self.bench.calibration
            steps = (float(cal.step_up), float(cal.step_down))
            return kernels.follow_pulses(
                g, report.device_ids, report.applied, steps, bounds, residual_of
            )
        g[report.device_ids] += report.applied * self._steps(report.applied)
        np.clip(g, *bounds, out=g)
        if residual_of is None:
            return None
        target, delta_g = residual_of
        ids = np.flatnonzero(delta_g != 0)  # (a bool array's nonzero has no branch)
        # every device has an update in a typical step: no gathers then
        if ids.size == g.size:
            return ids, np.subtract(target, g, out=target)
        return ids, target[ids] - g[ids]


class OpenLoopProgrammer(Programmer):
    """Open-loop counts from the nominal step, stochastically rounded (module docstring)."""

    strategy = "open_loop"

    def _apply(self, delta_g: np.ndarray) -> ProgrammingReport:
        """See :meth:`Programmer.apply` and the module docstring."""
        g = self.estimate()
        target = np.empty_like(g)  # clip(g + delta_g): what every device should reach
        plan = plan_open_loop(
            delta_g,
            g,
            self.bench.network.g_bounds,
            self.bench.calibration,
            self.bench.limits.max_pulses_per_request,
            self.rng,
            target_out=target,
        )
        self.capped += plan.capped
        report = self.bench.pulse(plan.request)
        followed = self._follow(report, g, (target, delta_g))
        assert followed is not None
        ids, residual = followed
        return ProgrammingReport(
            ids,
            residual,
            pulses=report.total_pulses,
            refused=int(np.sum(report.refused)),
            capped=plan.capped,
            notes=list(report.notes),
        )


class SignProgrammer(Programmer):
    """The Manhattan rule: one pulse along ``dG`` where ``|dG| > threshold`` steps."""

    strategy = "sign"

    def _apply(self, delta_g: np.ndarray) -> ProgrammingReport:
        """See :meth:`Programmer.apply` and the module docstring."""
        g = self.estimate()
        g_min, g_max = self.bench.network.g_bounds
        target = np.clip(g + delta_g, g_min, g_max)
        direction = np.sign(delta_g).astype(np.int64)
        room = np.where(direction > 0, g < g_max, g > g_min)
        fire = (np.abs(delta_g) > self.config.threshold * self._steps(direction)) & room
        ids = np.flatnonzero(fire)
        cal = self.bench.calibration
        report = self.bench.pulse(PulseRequest(ids, direction[ids], cal.amplitude_v, cal.width_s))
        self._follow(report, g)
        changed = np.flatnonzero(delta_g)
        return ProgrammingReport(
            changed,
            target[changed] - g[changed],
            pulses=report.total_pulses,
            refused=int(np.sum(report.refused)),
            notes=list(report.notes),
        )


class WriteVerifyProgrammer(Programmer):
    """Pulse, read, compare, ramp; stop within tolerance or at the cap (module docstring).

    Attributes
    ----------
    g_target : ndarray, shape (n_devices,), or None
        The conductance every device should hold (S): starts at the first read and
        accumulates every ``dG`` of ``apply``.
    failures : ndarray of int, shape (n_devices,), or None
        Programmings in a row that stopped at the cap, per device.
    retired : ndarray of bool, shape (n_devices,), or None
        Devices no longer programmed (``max_failures`` reached, or the bench refused them).
    """

    strategy = "write_verify"

    def __init__(
        self, bench: Bench, rng: np.random.Generator, config: ProgrammingConfig | None = None
    ) -> None:
        super().__init__(bench, rng, config)
        n = bench.network.n_devices
        self.g_target: np.ndarray | None = None
        self.failures = np.zeros(n, dtype=np.int64)
        self.retired = np.zeros(n, dtype=bool)

    @property
    def tolerance_s(self) -> float:
        """The tolerance in siemens."""
        cfg = self.config
        if cfg.tolerance_unit == "range":
            g_min, g_max = self.bench.network.g_bounds
            return cfg.tolerance * (g_max - g_min)
        cal = self.bench.calibration
        return cfg.tolerance * (cal.step_up + cal.step_down) / 2.0

    def _targets(self) -> np.ndarray:
        if self.g_target is None:
            self.g_target = self.estimate().copy()
        return self.g_target

    def _apply(self, delta_g: np.ndarray) -> ProgrammingReport:
        """See :meth:`Programmer.apply` and the module docstring."""
        g = self.estimate()
        target = self._targets()
        target += delta_g
        np.clip(target, *self.bench.network.g_bounds, out=target)
        target[self.retired] = g[self.retired]
        error = target - g
        direction = np.where(error > 0, 1, -1)
        todo = np.abs(error) > self.config.threshold * self._steps(direction)
        todo &= ~self.retired
        report = self.program(np.flatnonzero(todo), target[todo])
        notes = report.notes
        retired_before = int(np.count_nonzero(self.retired))
        verified = report.verified
        assert report.converged is not None
        self.failures[verified] = np.where(report.converged, 0, self.failures[verified] + 1)
        if self.config.max_failures is not None:
            self.retired |= self.failures >= self.config.max_failures
        self.retired[report.blocked] = True
        newly = int(np.count_nonzero(self.retired)) - retired_before
        if newly:
            target[self.retired] = g[self.retired]
            notes = [
                *notes,
                f"write-verify: retired {newly} device(s) that did not converge "
                f"({int(np.count_nonzero(self.retired))} retired in all)",
            ]
        touched = (delta_g != 0) | todo
        touched &= ~self.retired
        ids = np.flatnonzero(touched)
        return ProgrammingReport(
            ids,
            target[ids] - g[ids],
            pulses=report.pulses,
            refused=report.refused,
            capped=report.capped,
            reads=report.reads,
            iterations=report.iterations,
            converged=report.converged,
            verified=report.verified,
            blocked=report.blocked,
            notes=notes,
        )

    def program(self, device_ids: np.ndarray, targets: np.ndarray) -> ProgrammingReport:
        """Write-verify ``device_ids`` to ``targets`` (S), vectorised over the devices.

        Parameters
        ----------
        device_ids : ndarray of int, shape (n,)
            Distinct devices.
        targets : ndarray of float, shape (n,)
            Target conductances (S).

        Returns
        -------
        ProgrammingReport
            ``residual`` is ``targets - last read`` (S) for every device, ``converged``
            whether it came within the tolerance before ``max_iterations`` rounds,
            ``blocked`` the devices the bench delivered no pulse to (e.g. endurance).

        Notes
        -----
        Round k sends ``clip(round(|e| / step), 1, max_pulses_per_iteration)`` pulses along
        the error ``e`` (the estimate's error in round 0, the last read's afterwards) at the
        device's present amplitude, then reads every device still active. A device that did
        not get at least half the expected move closer is ramped by ``amplitude_step_v`` up
        to ``amplitude_max_v``; one whose error changed sign goes back to the nominal
        amplitude. The estimate ``g_estimate`` of a verified device becomes its last read.
        """
        cfg, cal, bench = self.config, self.bench.calibration, self.bench
        g = self.estimate()
        ids = np.asarray(device_ids, dtype=np.int64)
        targets = np.asarray(targets, dtype=float)
        n = ids.size
        tol = self.tolerance_s
        amp_lo, amp_hi = bench.limits.pulse_amplitude
        amp_max = min(cfg.amplitude_max_v or 1.2 * cal.amplitude_v, amp_hi)
        per_round = min(cfg.max_pulses_per_iteration, bench.limits.max_pulses_per_request)
        ramp = np.zeros(n, dtype=np.int64)  # amplitude = nominal + ramp * amplitude_step_v
        reading = g[ids].copy()
        converged = np.zeros(n, dtype=bool)
        blocked = np.zeros(n, dtype=bool)
        active = np.arange(n)
        pulses = refused = reads = rounds = 0
        bench_notes: list[str] = []
        while active.size and rounds < cfg.max_iterations:
            rounds += 1
            error = targets[active] - reading[active]
            direction = np.where(error > 0, 1, -1)
            count = np.clip(np.rint(np.abs(error) / self._steps(direction)), 1, per_round)
            count = count.astype(np.int64) * direction
            delivered = np.zeros(active.size, dtype=np.int64)
            for level in np.unique(ramp[active]):
                mine = np.flatnonzero(ramp[active] == level)
                volts = min(cal.amplitude_v + level * cfg.amplitude_step_v, amp_max)
                report = bench.pulse(
                    PulseRequest(
                        ids[active[mine]],
                        count[mine],
                        float(np.clip(volts, amp_lo, amp_hi)),
                        cal.width_s,
                    )
                )
                delivered[mine] = report.applied
                pulses += report.total_pulses
                refused += int(np.sum(report.refused))
                bench_notes += report.notes
            read = bench.read_conductances(ids[active])
            reads += active.size
            new_error = targets[active] - read
            reading[active] = read
            hit = np.abs(new_error) <= tol
            converged[active] = hit
            blocked[active] = delivered == 0
            overshot = np.sign(new_error) != np.sign(error)
            expected = np.abs(delivered) * self._steps(direction)
            slow = (np.abs(error) - np.abs(new_error) < 0.5 * expected) & ~overshot
            top = cal.amplitude_v + ramp[active] * cfg.amplitude_step_v >= amp_max
            ramp[active] = np.where(overshot, 0, ramp[active] + (slow & ~top))
            active = active[~hit & (delivered != 0)]
        g[ids] = reading
        notes = _summarise(bench_notes)
        capped_at = ~converged & ~blocked
        if np.any(capped_at):
            notes.append(
                f"write-verify: {int(np.count_nonzero(capped_at))} device(s) stopped at the "
                f"iteration cap ({cfg.max_iterations}) outside the tolerance ({tol:.3g} S)"
            )
        if np.any(blocked & ~converged):
            notes.append(
                f"write-verify: {int(np.count_nonzero(blocked & ~converged))} device(s) "
                "stopped: the bench delivered no pulse (see its notes)"
            )
        return ProgrammingReport(
            ids,
            targets - reading,
            pulses=pulses,
            refused=refused,
            reads=reads,
            iterations=rounds,
            converged=converged,
            verified=ids,
            blocked=ids[blocked & ~converged],
            notes=notes,
        )

    def resync(self) -> None:
        """Re-read every conductance; the targets keep what they accumulated."""
        super().resync()
        self._targets()

    def state_dict(self) -> dict[str, np.ndarray]:
        """The estimate, the targets, the failure streaks and the retired devices."""
        state = super().state_dict()
        state["g_target"] = self._targets().copy()
        state["failures"] = self.failures.copy()
        state["retired"] = self.retired.copy()
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state_dict`."""
        super().load_state_dict(state)
        self.g_target = np.array(state["g_target"], dtype=float)
        self.failures = np.array(state["failures"], dtype=np.int64)
        self.retired = np.array(state["retired"], dtype=bool)


def _summarise(notes: list[str], keep: int = 3) -> list[str]:
    """The first ``keep`` distinct notes, and how many more there were."""
    distinct = list(dict.fromkeys(notes))
    if len(distinct) <= keep:
        return distinct
    return [*distinct[:keep], f"(and {len(distinct) - keep} more bench notes)"]


PROGRAMMERS: dict[str, type[Programmer]] = {
    cls.strategy: cls for cls in (OpenLoopProgrammer, SignProgrammer, WriteVerifyProgrammer)
}


def make_programmer(
    bench: Bench, config: ProgrammingConfig, rng: np.random.Generator
) -> Programmer:
    """The programmer of ``config.strategy`` for a bench."""
    return PROGRAMMERS[config.strategy](bench, rng, config)
