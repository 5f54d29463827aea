"""Compiled loops for the per-device passes of a programming step (numba, optional).

A training step at the founding paper's size pulses ~100,000 of 159,040 devices. In numpy
each stage of that (plan the counts and the target, check the ids, move the devices, count
the half-select exposures, copy the changes into the circuit, follow the estimate and take
the residual) is several to thirty passes over the devices, 20-150 us each; here each stage
is one loop, compiled by numba. They compute the numpy code's values (its arithmetic in its
order, or an order shown to give the same bits, as the constant-step chain's), so every
result is the same bit for bit (the tests compare the two on random and edge-case inputs);
the numpy code stays the reference, and the only path where numba is not installed.

The kernels run only for arrays of at least :data:`MIN_DEVICES` elements (below that the
numpy passes take microseconds and the first call's compilation, ~1 s a kernel before the
on-disk cache holds it, would dominate a short run). ``HIL_KERNELS=0`` in the environment
turns them off; :func:`forced` turns them on or off within a block (tests).

Every device's work in a loop is independent of the others' (the ids of a call are
distinct), so a call is split into contiguous ranges run at once on :func:`threads` threads
(the caller's and a small pool's; the loops release the GIL). Each range writes only its own
devices and its own part of the outputs, and the parts are joined in order, so the results
do not depend on the number of threads. ``HIL_KERNEL_THREADS=1`` keeps every call on the
calling thread. (Python threads rather than numba's ``parallel=True``: its default threading
layer aborts the process when two threads launch parallel loops at once, as the API's
benches may.)
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache, partial
from typing import Any

import numpy as np

from hil.errors import ConfigError

#: Smallest array (devices, or pulsed devices) for which the compiled loops are used.
MIN_DEVICES = 32_768

#: Smallest range one thread gets (handing a range to a helper thread and waiting for it
#: costs 40-90 us on these 2-core virtual machines: the wake-up of an idle core).
MIN_RANGE = 16_384

#: The same for the light loops (a few arithmetic operations an element: the copy, the
#: estimate's follow, the V/2 counting): at paper scale the hand-over costs more than
#: half of one of them saves (measured: each was slower on two threads), so they are not
#: split below a million elements.
MIN_LIGHT_RANGE = 1 << 20

#: Pulses of a device's chain added without a branch in the constant-step loop.
_UNROLLED = 8

_threshold: float = MIN_DEVICES
_min_range: int = MIN_RANGE
_min_light_range: int = MIN_LIGHT_RANGE
_pool: ThreadPoolExecutor | None = None


@cache
def _numba() -> Any:
    """The numba module, or None when it is not installed or ``HIL_KERNELS=0``."""
    if os.environ.get("HIL_KERNELS", "1").strip() == "0":
        return None
    threads()  # a bad HIL_KERNEL_THREADS stops the first use, before any draw or pulse
    try:
        return importlib.import_module("numba")
    except ImportError:
        return None


@cache
def threads() -> int:
    """Threads one call's loop is split over: ``HIL_KERNEL_THREADS``, else the cores (at
    most 4: the loops are a few hundred microseconds, and more threads cost more to wake)."""
    value = os.environ.get("HIL_KERNEL_THREADS", "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ConfigError(
                f"HIL_KERNEL_THREADS must be a whole number of threads, got {value!r}; "
                "unset it to use every core (up to 4)"
            ) from None
    return max(1, min(os.cpu_count() or 1, 4))


def _helpers() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(threads() - 1, thread_name_prefix="hil-kernels")
    return _pool


def _forget_pool() -> None:
    # a forked child (a sweep worker) has the parent's pool object but none of its threads
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


def _ranges(n: int, light: bool = False) -> list[tuple[int, int]]:
    """``[0, n)`` cut into at most :func:`threads` contiguous ranges of ``_min_range``
    (``_min_light_range`` for a light loop) or more elements (one range for a small call)."""
    smallest = _min_light_range if light else _min_range
    parts = max(1, min(threads(), n // max(smallest, 1)))
    return [(part * n // parts, (part + 1) * n // parts) for part in range(parts)]


def _at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` at once (the first on this thread); their results, in order."""
    others = [_helpers().submit(call) for call in calls[1:]]
    first = calls[0]()
    return [first, *(future.result() for future in others)]


def _split(
    kernel: Callable[..., Any], n: int, *args: Any, light: bool = False
) -> list[tuple[int, Any]]:
    """``kernel(*args, start, stop)`` over the ranges of ``[0, n)`` (a ``light`` loop's),
    at once; ``(start, result)`` of each range, in order."""
    ranges = _ranges(n, light)
    results = _at_once([partial(kernel, *args, a, b) for a, b in ranges])
    return [(a, result) for (a, _), result in zip(ranges, results, strict=True)]


def _joined(out: np.ndarray, filled: list[tuple[int, int]]) -> np.ndarray:
    """``out[start : start + count]`` of every ``(start, count)``, in order, in one array
    (each range's loop writes its part of ``out`` from its own start); one range's part is
    a view of ``out``, not a copy."""
    if len(filled) == 1:
        start, count = filled[0]
        return out[start : start + count]
    return np.concatenate([out[start : start + count] for start, count in filled])


def available() -> bool:
    """Whether the compiled loops can run (numba installed, not turned off)."""
    return _numba() is not None


def active(size: int) -> bool:
    """Whether a pass over ``size`` elements should use a compiled loop."""
    return size >= _threshold and available()


@contextmanager
def forced(on: bool) -> Iterator[None]:
    """Use the compiled loops for every size (``on``) or for none within the block."""
    global _threshold, _min_range, _min_light_range
    before = _threshold, _min_range, _min_light_range
    # on: also split calls of any size (so the tests' small arrays cross range ends)
    if on:
        _threshold, _min_range, _min_light_range = 0, 1, 1
    else:
        _threshold, _min_range, _min_light_range = math.inf, MIN_RANGE, MIN_LIGHT_RANGE
    try:
        yield
    finally:
        _threshold, _min_range, _min_light_range = before


# --- the loops, as plain Python (compiled on first use) ---------------------------------------
def _plan_open_loop(
    delta_g: np.ndarray,
    g: np.ndarray,
    g_min: float,
    g_max: float,
    step_up: float,
    step_down: float,
    draws: np.ndarray,
    max_pulses: int,
    ids_out: np.ndarray,
    counts_out: np.ndarray,
    target_out: np.ndarray,
    start: int,
    stop: int,
) -> tuple[int, int]:
    # hil.programming.plan_open_loop, one device at a time: room, clipped magnitude in
    # steps, stochastic rounding with the device's draw, the cap, the sign. The signs and
    # the roundings are coin tosses: selects and arithmetic on comparisons, no branches
    # (a mispredicted branch costs more than the rest of the loop body).
    # devices [start, stop) only; their pulses are written from ids_out[start] on.
    # With a target_out, also the target np.minimum(np.maximum(g + d, g_min), g_max) (a
    # NaN kept, an equal value the first operand's, as numpy's): no second pass for it
    n_out = start
    capped = 0
    with_target = target_out.size > 0
    for k in range(start, stop):
        d = delta_g[k]
        up = d > 0
        g_k = g[k]
        if with_target:
            t = g_k + d
            t = t if (t >= g_min or t != t) else g_min
            target_out[k] = t if (t <= g_max or t != t) else g_max
        room_up = g_max - g_k  # both rooms, then a select: no load or branch on the sign
        room_down = g_k - g_min
        room = room_up if up else room_down
        step = step_up if up else step_down
        room = room if room >= 0.0 else 0.0  # np.maximum(room, 0.0)
        magnitude = abs(d)
        magnitude = magnitude if magnitude <= room else room  # np.minimum(magnitude, room)
        magnitude = magnitude / step
        low = np.floor(magnitude)
        low += draws[k] < magnitude - low
        count = int(low)
        over = count > max_pulses
        capped += int(over)
        count = max_pulses if over else count
        ids_out[n_out] = k
        counts_out[n_out] = count if up else -count
        n_out += count != 0
    return n_out - start, capped


def _pulse_constant(
    g_all: np.ndarray,
    pulse_count: np.ndarray,
    lo_all: np.ndarray,
    hi_all: np.ndarray,
    scale_up: np.ndarray,
    scale_down: np.ndarray,
    stuck: np.ndarray,
    idx: np.ndarray,
    signed: np.ndarray,
    gain: np.ndarray,
    step_up: float,
    step_down: float,
    g_before: np.ndarray,
    g_after: np.ndarray,
    effective: np.ndarray,
    start: int,
    stop: int,
) -> None:
    # simulators.devices.array.DeviceArray.apply_pulses for constant steps and no endurance
    # limit: every pulse counted; a device moves when it has pulses, gain and is not stuck,
    # by the increment (scale * gain) * step, then per pulse an addition and a clip
    # (np.clip: the max, then the min).
    # From inside its bounds a device's chain is monotone (x + increment rounds to a value
    # on the same side of x), so only the bound it moves towards can clip, and once there
    # every later sum is past it as well: the chain clipped once at the end has the same
    # bits. Its first 8 additions run without a branch (the n-th sum kept by a select): the
    # counts vary from device to device, and a loop exit mispredicted per device cost more
    # than the additions. A device outside its bounds takes the chain clip by clip.
    scalar_gain = gain.size == 1
    any_stuck = stuck.size > 1
    for k in range(start, stop):
        d = idx[k]
        signed_count = signed[k]
        n_pulses = abs(signed_count)
        gain_k = gain[0] if scalar_gain else gain[k]
        x = g_all[d]
        g_before[k] = x
        moves = n_pulses > 0 and gain_k > 0.0 and not (any_stuck and stuck[d])
        effective[k] = moves
        pulse_count[d] += n_pulses
        if moves:
            up = signed_count > 0
            increment = (scale_up[d] if up else scale_down[d]) * gain_k
            increment = increment * (step_up if up else -step_down)
            lo = lo_all[d]
            hi = hi_all[d]
            if lo <= x <= hi:
                total = x
                for n in range(1, _UNROLLED + 1):
                    total = total + increment
                    x = total if n <= n_pulses else x
                for _ in range(_UNROLLED, n_pulses):
                    x = x + increment
                x = x if x > lo else lo
                x = x if x < hi else hi
            else:
                for _ in range(n_pulses):
                    x = x + increment
                    x = x if x > lo else lo
                    x = x if x < hi else hi
            g_all[d] = x
        g_after[k] = x


def _copy_changed(
    g: np.ndarray,
    candidates: np.ndarray,
    values: np.ndarray,
    changed: np.ndarray,
    start: int,
    stop: int,
) -> int:
    # simulators.bench.SimulatedBench._sync_conductances: write the values that differ,
    # list their devices in order (candidates [start, stop), listed from changed[start] on)
    n_changed = start
    for k in range(start, stop):
        d = candidates[k]
        differs = values[k] != g[d]
        changed[n_changed] = d
        n_changed += differs
        g[d] = values[k] if differs else g[d]
    return n_changed - start


def _count_half_selected(
    disturb: np.ndarray,
    first: int,
    n_cols: int,
    ids: np.ndarray,
    applied: np.ndarray,
    per_row: np.ndarray,
    per_col: np.ndarray,
    start: int,
    stop: int,
) -> None:
    # crossbar_scheme.exposure_totals then DeviceArray.count_exposures under V/2: device
    # (i, j) sees the pulses of row i and column j but its own, twice (integers: any
    # order). The line totals accumulate in per_row / per_col (the caller adds them to the
    # whole block when the counts are read); here only the selected devices' own.
    # The ids ascend (the caller checks), so the row only moves forward: found by steps
    # from the range's first device, not a 64-bit division per device (its latency was
    # most of the loop).
    if start >= stop:
        return
    row = (ids[start] - first) // n_cols
    row_start = row * n_cols
    for k in range(start, stop):
        position = ids[k] - first
        while position >= row_start + n_cols:
            row += 1
            row_start += n_cols
        pulses = abs(applied[k])
        per_row[row] += pulses
        per_col[position - row_start] += pulses
        disturb[ids[k]] -= 2 * pulses


def _follow_pulses(
    g: np.ndarray,
    ids: np.ndarray,
    applied: np.ndarray,
    step_up: float,
    step_down: float,
    start: int,
    stop: int,
) -> None:
    # hil.programming.Programmer._follow, its first half: g[ids] += applied * step, the
    # step up for a positive count, else down (distinct ids)
    for k in range(start, stop):
        count = applied[k]
        g[ids[k]] += count * (step_up if count > 0 else step_down)


def _clip_residual(
    g: np.ndarray,
    g_min: float,
    g_max: float,
    target: np.ndarray,
    delta_g: np.ndarray,
    ids_out: np.ndarray,
    residual_out: np.ndarray,
    start: int,
    stop: int,
) -> int:
    # the second half: np.clip(g, g_min, g_max, out=g) (numpy's clip: the max, then the
    # min, a NaN kept); with a target, target - g of the devices whose delta_g is not 0,
    # listed in order from ids_out[start] / residual_out[start] on
    residual = target.size > 0
    n_out = start
    for k in range(start, stop):
        x = g[k]
        x = x if (x != x or x > g_min) else g_min
        x = x if (x != x or x < g_max) else g_max
        g[k] = x
        if residual:
            ids_out[n_out] = k
            residual_out[n_out] = target[k] - x
            n_out += delta_g[k] != 0
    return n_out - start


def _int_summary(values: np.ndarray) -> tuple[int, int, bool]:
    # min, max and whether strictly ascending, in one pass (values.size >= 1)
    lo = values[0]
    hi = values[0]
    ascending = True
    for k in range(1, values.size):
        v = values[k]
        ascending &= v > values[k - 1]
        lo = min(lo, v)
        hi = max(hi, v)
    return lo, hi, ascending


@cache
def _compiled() -> dict[str, Any]:
    numba = _numba()
    assert numba is not None, "compiled loops asked for without numba"
    # no fastmath: IEEE arithmetic in the written order, so the numpy code's bits
    jit = numba.njit(cache=True, nogil=True)
    return {
        f.__name__: jit(f)
        for f in (
            _plan_open_loop,
            _pulse_constant,
            _copy_changed,
            _count_half_selected,
            _follow_pulses,
            _clip_residual,
            _int_summary,
        )
    }


# --- the entry points -------------------------------------------------------------------------
def plan_open_loop(
    delta_g: np.ndarray,
    g: np.ndarray,
    g_bounds: tuple[float, float],
    steps: tuple[float, float],
    draws: np.ndarray,
    max_pulses: int,
    target_out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Open-loop pulse counts: ``(ids, signed counts, capped)`` of
    :func:`hil.programming.plan_open_loop` (arguments as there; ``steps`` is
    ``(step_up, step_down)`` in S, ``draws`` the uniform draws of its stochastic rounding;
    ``target_out``, if given, gets ``clip(g + delta_g)``).
    """
    n = delta_g.size
    ids = np.empty(n, dtype=np.int64)
    counts = np.empty(n, dtype=np.int64)
    parts = _split(
        _compiled()["_plan_open_loop"],
        n,
        delta_g,
        g,
        float(g_bounds[0]),
        float(g_bounds[1]),
        float(steps[0]),
        float(steps[1]),
        draws,
        int(max_pulses),
        ids,
        counts,
        np.zeros(0) if target_out is None else target_out,
    )
    filled = [(start, n_out) for start, (n_out, _) in parts]
    capped = sum(part_capped for _, (_, part_capped) in parts)
    return _joined(ids, filled), _joined(counts, filled), int(capped)


def pulse_constant(
    g: np.ndarray,
    pulse_count: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    scales: tuple[np.ndarray, np.ndarray],
    stuck: np.ndarray | None,
    idx: np.ndarray,
    signed: np.ndarray,
    gain: np.ndarray,
    steps: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Constant-step pulses on ``g`` and ``pulse_count`` in place: the values of
    ``DeviceArray.apply_pulses`` for a device without endurance limit or random steps.

    ``bounds``, ``scales`` (up, down) and ``stuck`` (or None: no device stuck) are per
    device; ``idx`` (distinct), ``signed`` and ``gain`` (maybe a broadcast scalar) per
    pulsed device; ``steps`` the model's ``(step_up, step_down)``. Returns ``(g_before,
    g_after, effective)`` per pulsed device.
    """
    n = idx.size
    g_before, g_after = np.empty(n), np.empty(n)
    effective = np.empty(n, dtype=np.bool_)
    gain = np.ascontiguousarray(gain[:1] if gain.strides == (0,) else gain, dtype=np.float64)
    _split(
        _compiled()["_pulse_constant"],
        n,
        g,
        pulse_count,
        bounds[0],
        bounds[1],
        scales[0],
        scales[1],
        np.zeros(1, np.bool_) if stuck is None else stuck,
        np.ascontiguousarray(idx, dtype=np.int64),
        np.ascontiguousarray(signed, dtype=np.int64),
        gain,
        float(steps[0]),
        float(steps[1]),
        g_before,
        g_after,
        effective,
    )
    return g_before, g_after, effective


def copy_changed(g: np.ndarray, candidates: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Write ``values`` into ``g[candidates]`` where they differ; the devices that changed
    (ascending when ``candidates`` ascend)."""
    changed = np.empty(candidates.size, dtype=np.int64)
    parts = _split(
        _compiled()["_copy_changed"],
        candidates.size,
        g,
        np.ascontiguousarray(candidates, dtype=np.int64),
        np.ascontiguousarray(values, dtype=np.float64),
        changed,
        light=True,
    )
    return _joined(changed, parts)  # (start, changes) of every range


def count_half_selected(
    disturb: np.ndarray,
    first: int,
    n_cols: int,
    ids: np.ndarray,
    applied: np.ndarray,
    line_totals: tuple[np.ndarray, np.ndarray],
) -> None:
    """Count the V/2 half-select exposures of pulses ``applied`` to ``ids`` (ascending
    devices of a block ``n_cols`` wide whose device (0, 0) is ``first``): each selected
    device's own correction in ``disturb``, the pulses per row and per column added to
    ``line_totals`` (int64 arrays, in place) for the caller to spread over the block."""
    per_row, per_col = line_totals
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    applied = np.ascontiguousarray(applied, dtype=np.int64)
    kernel = _compiled()["_count_half_selected"]
    ranges = _ranges(ids.size, light=True)
    # each range adds to line totals of its own, the first to the caller's (integers: the
    # sums are the same in any order)
    lines = [line_totals] + [(np.zeros_like(per_row), np.zeros_like(per_col)) for _ in ranges[1:]]
    _at_once(
        [
            partial(kernel, disturb, int(first), int(n_cols), ids, applied, *own, a, b)
            for (a, b), own in zip(ranges, lines, strict=True)
        ]
    )
    for rows, cols in lines[1:]:
        per_row += rows
        per_col += cols


def follow_pulses(
    g: np.ndarray,
    ids: np.ndarray,
    applied: np.ndarray,
    steps: tuple[float, float],
    g_bounds: tuple[float, float],
    residual_of: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Move the estimate ``g`` (in place) by the nominal step of every pulse ``applied`` to
    ``ids`` (distinct; ``steps`` is ``(step_up, step_down)``) and clip all of it to
    ``g_bounds``: ``hil.programming.Programmer._follow``. With ``residual_of = (target,
    delta_g)`` (every device's), also ``(changed, target[changed] - g[changed])`` for the
    devices whose ``delta_g`` is not 0, from the same pass."""
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    applied = np.ascontiguousarray(applied, dtype=np.int64)
    kernel = _compiled()
    _split(kernel["_follow_pulses"], ids.size, g, ids, applied, *map(float, steps), light=True)
    n = g.size if residual_of is not None else 0
    target, delta_g = residual_of if residual_of is not None else (np.zeros(0), np.zeros(0))
    changed, residual = np.empty(n, dtype=np.int64), np.empty(n)
    parts = _split(
        kernel["_clip_residual"],
        g.size,
        g,
        *map(float, g_bounds),
        target,
        delta_g,
        changed,
        residual,
        light=True,
    )
    if residual_of is None:
        return None
    return _joined(changed, parts), _joined(residual, parts)


def int_summary(values: np.ndarray) -> tuple[int, int, bool]:
    """``(min, max, strictly ascending)`` of a non-empty 1-D integer array: one compiled
    pass for a large int64 array (what the id checks of a pulse ask three or four numpy
    passes for), numpy's reductions otherwise."""
    if values.dtype == np.int64 and values.ndim == 1 and active(values.size):
        lo, hi, ascending = _compiled()["_int_summary"](values)
        return int(lo), int(hi), bool(ascending)
    ascending = values.size < 2 or bool(np.all(values[1:] > values[:-1]))
    return int(values.min()), int(values.max()), ascending
