"""Small networks shared by the tests."""

from __future__ import annotations

from hil.network import NetworkSpec


def small_spec(model: str = "ideal", amplifier: float | None = None, **kw) -> NetworkSpec:
    """A network small enough for finite differences, with clamping diodes that bite."""
    params = dict(
        inputs=6,
        hidden=[5, 4],
        outputs=3,
        input_gain=3.0,
        amplifier_gain=amplifier,
        diode={"model": model, "v_low": -0.3, "v_high": 0.5},
    )
    params.update(kw)
    return NetworkSpec(**params)
