"""The converters between a simulated bench and its trainer: a DAC on the inputs, an ADC with
noise on every measured voltage.

A physical bench sets its input voltages with digital-to-analog converters and measures node
voltages with analog-to-digital converters; both have a finite resolution, and the ADC adds
noise. ``Converters`` reproduces that on a simulated bench. Each converter is ideal (a
pass-through) until given a number of bits.

Coding
------
Both converters are bipolar, two's complement, over ``[-full_scale, +full_scale)``:
``N`` bits give codes ``-2**(N-1) .. 2**(N-1) - 1`` and an LSB of ``full_scale / 2**(N-1)``
(V); a voltage reads as ``clip(round(V / LSB), codes) * LSB``, so 0 V is exact and a value
beyond full scale saturates at the end code (the ADC flags those readings, and counts them
in ``adc_overflows``). The ADC adds Gaussian noise of ``adc_noise_v`` (V, rms) before it
quantises; with no bits it adds the noise only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from hil.errors import ConfigError


def quantise(values: np.ndarray, bits: int, full_scale_v: float) -> tuple[np.ndarray, np.ndarray]:
    """Round voltages to the codes of a bipolar ``bits``-bit converter.

    Parameters
    ----------
    values : ndarray of float, any shape
        Voltages (V).
    bits : int
        Resolution (``>= 2``).
    full_scale_v : float
        Full scale (V): codes cover ``[-full_scale_v, full_scale_v - LSB]``.

    Returns
    -------
    (ndarray, ndarray of bool)
        The quantised voltages (V), same shape as ``values``, and which of them saturated
        at an end code (same shape).
    """
    lsb = full_scale_v / 2 ** (bits - 1)
    codes = np.rint(np.asarray(values, dtype=float) / lsb)
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    saturated = (codes < low) | (codes > high)
    return np.clip(codes, low, high) * lsb, saturated


class Converters:
    """DAC on the input voltages, ADC with noise on the measured node voltages.

    Parameters
    ----------
    dac_bits : int or None
        DAC resolution; None for ideal inputs.
    dac_full_scale_v : float
        DAC full scale (V).
    adc_bits : int or None
        ADC resolution; None for no quantisation of the measurements.
    adc_full_scale_v : float
        ADC full scale (V).
    adc_noise_v : float
        RMS noise added to every measured voltage (V), ``>= 0``.
    seed : int, sequence of int, numpy Generator or None
        Seeds the ADC noise.

    Attributes
    ----------
    adc_overflows : int
        Measured voltages that saturated the ADC so far.
    """

    def __init__(
        self,
        dac_bits: int | None = None,
        dac_full_scale_v: float = 10.0,
        adc_bits: int | None = None,
        adc_full_scale_v: float = 10.0,
        adc_noise_v: float = 0.0,
        seed: int | Sequence[int] | np.random.Generator | None = None,
    ) -> None:
        for name, bits in (("dac_bits", dac_bits), ("adc_bits", adc_bits)):
            if bits is not None and not 2 <= bits <= 32:
                raise ConfigError(f"{name} must be None or an integer in [2, 32], got {bits}")
        for name, scale in (
            ("dac_full_scale_v", dac_full_scale_v),
            ("adc_full_scale_v", adc_full_scale_v),
        ):
            if not np.isfinite(scale) or scale <= 0:
                raise ConfigError(f"{name} must be a finite voltage > 0 V, got {scale}")
        if not np.isfinite(adc_noise_v) or adc_noise_v < 0:
            raise ConfigError(f"adc_noise_v must be a finite voltage >= 0 V, got {adc_noise_v}")
        self.dac_bits = dac_bits
        self.dac_full_scale_v = float(dac_full_scale_v)
        self.adc_bits = adc_bits
        self.adc_full_scale_v = float(adc_full_scale_v)
        self.adc_noise_v = float(adc_noise_v)
        self.adc_overflows = 0
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    @property
    def ideal(self) -> bool:
        """True when both converters pass voltages through unchanged."""
        return self.dac_bits is None and self.adc_bits is None and self.adc_noise_v == 0.0

    def dac_lsb(self) -> float | None:
        """DAC step (V), or None for an ideal DAC."""
        return None if self.dac_bits is None else self.dac_full_scale_v / 2 ** (self.dac_bits - 1)

    def adc_lsb(self) -> float | None:
        """ADC step (V), or None for an ADC that does not quantise."""
        return None if self.adc_bits is None else self.adc_full_scale_v / 2 ** (self.adc_bits - 1)

    def drive(self, volts: np.ndarray) -> np.ndarray:
        """Voltages the DAC outputs for the requested ones (V), same shape."""
        if self.dac_bits is None:
            return np.asarray(volts, dtype=float)
        out, _ = quantise(volts, self.dac_bits, self.dac_full_scale_v)  # a DAC clips silently
        return out

    def measure(self, volts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the ADC reads for true voltages: noise, then quantisation.

        Parameters
        ----------
        volts : ndarray of float, any shape
            The true voltages (V).

        Returns
        -------
        (ndarray, ndarray of bool)
            The readings (V) and which of them overflowed (saturated at the full scale),
            both of the shape of ``volts``. An ADC without bits never overflows.
        """
        volts = np.asarray(volts, dtype=float)
        if self.adc_noise_v > 0.0:
            volts = volts + self.adc_noise_v * self._rng.standard_normal(volts.shape)
        if self.adc_bits is None:
            return volts, np.zeros(volts.shape, dtype=bool)
        out, saturated = quantise(volts, self.adc_bits, self.adc_full_scale_v)
        self.adc_overflows += int(np.count_nonzero(saturated))
        return out, saturated

    def state_dict(self) -> dict[str, np.ndarray]:
        """The noise stream and the overflow counter (numpy arrays, for checkpoints)."""
        return {
            "rng": np.array(json.dumps(self._rng.bit_generator.state)),
            "adc_overflows": np.array(self.adc_overflows),
        }

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_dict` saved."""
        self._rng.bit_generator.state = json.loads(str(state["rng"]))
        self.adc_overflows = int(state["adc_overflows"])
