"""Turn desired conductance changes into programming pulses.

The trainer asks for ``dG`` per device; a device only moves in steps, so the plan is a pulse
count per device. Open-loop planning divides by the bench's nominal step and rounds
stochastically (``E[count * step] = dG``, so small updates are not lost on average), and
never plans pulses past a device's bounds, as far as the planner's estimate of G knows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.bench import Bench, PulseCalibration, PulseReport, PulseRequest


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


def stochastic_round(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Round to an integer below or above, with probabilities that keep the mean exact."""
    low = np.floor(values)
    return (low + (rng.random(values.shape) < values - low)).astype(np.int64)


def plan_open_loop(
    delta_g: np.ndarray,
    g_estimate: np.ndarray,
    g_bounds: tuple[float, float],
    calibration: PulseCalibration,
    max_pulses: int,
    rng: np.random.Generator,
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
    """
    g_min, g_max = g_bounds
    up = delta_g > 0
    step = np.where(up, calibration.step_up, calibration.step_down)
    room = np.where(up, g_max - g_estimate, g_estimate - g_min)
    magnitude = np.minimum(np.abs(delta_g), np.maximum(room, 0.0))
    counts = stochastic_round(magnitude / step, rng)
    capped = int(np.count_nonzero(counts > max_pulses))
    counts = np.minimum(counts, max_pulses) * np.where(up, 1, -1)
    ids = np.flatnonzero(counts)
    request = PulseRequest(ids, counts[ids], calibration.amplitude_v, calibration.width_s)
    return PulsePlan(request, capped)


class OpenLoopProgrammer:
    """Programs a bench open-loop from its nominal step and tracks an estimate of G.

    The estimate starts from one read of every conductance and then follows the pulses
    applied; ``resync`` re-reads it (a lab bench pays one read per device for that).
    """

    def __init__(self, bench: Bench, rng: np.random.Generator) -> None:
        self.bench = bench
        self.rng = rng
        self.g_estimate = bench.read_conductances()
        self.capped = 0

    def resync(self) -> None:
        """Re-read every conductance."""
        self.g_estimate = self.bench.read_conductances()

    def apply(self, delta_g: np.ndarray) -> PulseReport:
        """Pulse every device towards ``g + delta_g``."""
        cal = self.bench.calibration
        plan = plan_open_loop(
            delta_g,
            self.g_estimate,
            self.bench.network.g_bounds,
            cal,
            self.bench.limits.max_pulses_per_request,
            self.rng,
        )
        self.capped += plan.capped
        report = self.bench.pulse(plan.request)
        step = np.where(report.applied > 0, cal.step_up, cal.step_down)
        self.g_estimate[report.device_ids] += report.applied * step
        np.clip(self.g_estimate, *self.bench.network.g_bounds, out=self.g_estimate)
        return report
