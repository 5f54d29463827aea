"""Named device presets, each with the source of its numbers, and the model registry.

Magnitudes of the analytic presets come from IBM aihwkit's published device fits
(``aihwkit.simulator.presets.devices``), whose weights live in a normalised range of width 2
(``[-1, 1]`` or ``[-0.75, 1.25]``); a step ``dw_min`` there is ``dw_min / 2`` of the range
here. Every preset is built on ``[g_min, g_max]`` (default: the network default 0.1 to 10 uS)
and any model can be moved onto another range with ``model.rescaled(g_min, g_max)``.

Pulse laws (threshold, nominal amplitude and width) are assumptions, not fits: they are
chosen inside the usual programming window (0.8 to 2 V, 10 ns to 1 us) with the threshold
above V/2 so that the V/2 scheme does not disturb half-selected devices.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

from hil.errors import ConfigError
from simulators.devices.analytic import (
    ConstantStepModel,
    ExponentialStepModel,
    LinearStepModel,
    SoftBoundsModel,
)
from simulators.devices.base import DeviceModel
from simulators.devices.measured import MeasuredModel
from simulators.devices.pulse_law import PulseLaw
from simulators.devices.variability import Variability

AnyDeviceModel = Annotated[
    ConstantStepModel | LinearStepModel | SoftBoundsModel | ExponentialStepModel | MeasuredModel,
    Field(discriminator="kind"),
]
"""Any device model, told apart by its ``kind`` field (for configs and saved states)."""

_MODEL_ADAPTER: TypeAdapter[DeviceModel] = TypeAdapter(AnyDeviceModel)

NETWORK_G_MIN = 1e-7
NETWORK_G_MAX = 1e-5

TAOX_FILES = ("TaOx_all_1_dG_increasing.txt.gz", "TaOx_all_1_dG_decreasing.txt.gz")
ENODE_FILES = ("ENODe_dG_increasing.txt.gz", "ENODe_dG_decreasing.txt.gz")


def model_from_dict(data: dict) -> DeviceModel:
    """Rebuild a device model from ``model.model_dump(mode="json")`` (or a config dict).

    Raises
    ------
    ConfigError
        If the dict does not describe a valid model (names the problem).
    """
    try:
        return _MODEL_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid device model: {exc}") from exc


def ideal(g_min: float = NETWORK_G_MIN, g_max: float = NETWORK_G_MAX) -> ConstantStepModel:
    """A perfect device: constant symmetric step of 1/1000 of the range, no noise at all.

    Source: the "about 1000 pulses over the full range" of the hardware fits (aihwkit's
    ``GokmenVlasovPresetDevice`` keeps 1200 states with ``dw_min = 0.0016``), with every
    non-ideality set to zero. Pulse law: V_th 0.6 V, 1.0 V, 1 us (assumption).
    """
    step = (g_max - g_min) / 1000.0
    return ConstantStepModel(
        g_min=g_min,
        g_max=g_max,
        step_up=step,
        step_down=step,
        pulse=PulseLaw(v_threshold=0.6, v_nominal=1.0, width_nominal=1e-6),
        variability=Variability(),
    )


def reram(g_min: float = NETWORK_G_MIN, g_max: float = NETWORK_G_MAX) -> SoftBoundsModel:
    """ReRAM (HfO2-like): soft bounds, ~1000 pulses over the range, strong c2c noise.

    Sources
    -------
    - Step law and asymmetry: aihwkit ``ReRamSBPresetDevice`` (soft bounds, a loose fit to
      Gong et al., Nat. Commun. 2018): ``dw_min = 0.002``, ``w_max = 1.25``,
      ``w_min = -0.75`` give time constants ``A_up = 1.25 / 0.002 = 625`` and
      ``A_down = 0.75 / 0.002 = 375`` pulses: mid-range steps of range/1250 (up) and
      range/750 (down), i.e. ~1000 pulses over the range and depression 1.7x stronger.
    - Cycle-to-cycle noise: 4.0 x the mean step, inside the 3.75x (``ReRamSBPresetDevice``,
      ``dw_min_std = 3.75``) to 5x (``ReRamESPresetDevice``, ``dw_min_std = 5.0``) of the
      fits. Here it is multiplicative (relative to the step at the present G).
    - Device-to-device: step 30 % (``dw_min_dtod = 0.3``), up/down imbalance 5 %
      (``ReRamESPresetDevice.up_down_dtod = 0.05``), bounds 30 % (log-normal, each bound).
    - Stuck devices: 1 % stuck on, 2 % stuck off ("a few %"; measured arrays reach 10 to
      13.5 %, e.g. 11 % unresponsive in Li et al. 2018: raise them for a pessimistic run).
    - Read noise 0.5 % and pulse law V_th 0.9 V, 1.5 V, 100 ns: assumptions.
    """
    return SoftBoundsModel(
        g_min=g_min,
        g_max=g_max,
        pulses_up=625.0,
        pulses_down=375.0,
        pulse=PulseLaw(v_threshold=0.9, v_nominal=1.5, width_nominal=100e-9),
        variability=Variability(
            step_d2d=0.3,
            updown_d2d=0.05,
            bounds_d2d=0.3,
            c2c=4.0,
            stuck_on=0.01,
            stuck_off=0.02,
            read_noise=0.005,
        ),
    )


def ecram(g_min: float = NETWORK_G_MIN, g_max: float = NETWORK_G_MAX) -> LinearStepModel:
    """Li-ion ECRAM: near-linear, symmetric at mid-range, low noise, 1000 states.

    Source: aihwkit ``EcRamPresetDevice`` (linear-step fit to Tang et al., IEDM 2018):
    ``dw_min = 0.002`` (1000 mid-range steps over the range, equal up and down),
    ``gamma_up = 0.1153``, ``gamma_down = 0.5085``, multiplicative c2c noise
    ``dw_min_std = 0.3``, device-to-device step 10 %, up/down 1 %, bounds 5 %, no stuck
    devices. Read noise 0.1 % and pulse law V_th 0.6 V, 1.0 V, 1 us: assumptions (ECRAM
    is written through a separate gate, so half-select disturb is not its usual issue).
    """
    step = (g_max - g_min) / 1000.0
    return LinearStepModel(
        g_min=g_min,
        g_max=g_max,
        step_up=step,
        step_down=step,
        gamma_up=0.1153,
        gamma_down=0.5085,
        pulse=PulseLaw(v_threshold=0.6, v_nominal=1.0, width_nominal=1e-6),
        variability=Variability(
            step_d2d=0.1, updown_d2d=0.01, bounds_d2d=0.05, c2c=0.3, read_noise=0.001
        ),
    )


def _find_tables(data_dir: str | Path, names: tuple[str, str]) -> tuple[Path, Path]:
    base = Path(data_dir)
    for folder in (base, base / "device_luts", base / "data" / "device_luts"):
        paths = (folder / names[0], folder / names[1])
        if all(p.is_file() for p in paths):
            return paths
    raise ConfigError(
        f"measured tables {names[0]} and {names[1]} not found in {base} "
        f"(nor in its device_luts/ or data/device_luts/ folder)"
    )


def taox_measured(
    data_dir: str | Path, g_min: float | None = None, g_max: float | None = None
) -> MeasuredModel:
    """TaOx memristor measured by Sandia (cross-sim-data, ``TaOx_all_1``).

    501 G bins from 18.6 to 118.6 uS, 501 CDF points. Give ``g_min``/``g_max`` to map it
    onto a network's range. Note the data: the mean potentiating step is ~(169 uS - G), so
    one pulse from anywhere below ~100 uS takes the device to the top of the range (an
    abrupt SET); depression is gradual (~50 pulses from the top) and stalls near 27 uS,
    where the mean depressing step is ~0. Pulse law V_th 0.6 V, 1.0 V, 1 us: assumption
    (the table is one fixed pulse condition).
    """
    return _sandia_model(data_dir, TAOX_FILES, g_min, g_max)


def enode_measured(
    data_dir: str | Path, g_min: float | None = None, g_max: float | None = None
) -> MeasuredModel:
    """ENODe (electrochemical neuromorphic organic device) measured by Sandia (cross-sim-data).

    48 G bins from 297.7 to 978.3 uS, 122 CDF points; a population crosses 95 % of the
    range in about 170 potentiating or 270 depressing pulses. Give ``g_min``/``g_max`` to
    map it onto a network's range. Pulse law V_th 0.6 V, 1.0 V, 1 us: assumption.
    """
    return _sandia_model(data_dir, ENODE_FILES, g_min, g_max)


PRESETS: dict[str, Callable[..., DeviceModel]] = {
    "ideal": ideal,
    "reram": reram,
    "ecram": ecram,
    "taox_measured": taox_measured,
    "enode_measured": enode_measured,
}


def preset(name: str, **kwargs: object) -> DeviceModel:
    """The preset called ``name`` (see ``PRESETS``), built with ``kwargs``.

    Raises
    ------
    ConfigError
        If no preset has that name (lists the known ones).
    """
    try:
        factory = PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown device preset {name!r}; known presets: {', '.join(sorted(PRESETS))}"
        ) from None
    return factory(**kwargs)


def _sandia_model(
    data_dir: str | Path, files: tuple[str, str], g_min: float | None, g_max: float | None
) -> MeasuredModel:
    """A measured model on one of Sandia's table pairs (pulse law: an assumption)."""
    inc, dec = _find_tables(data_dir, files)
    return MeasuredModel(
        file_increasing=inc,
        file_decreasing=dec,
        g_min=g_min,
        g_max=g_max,
        pulse=PulseLaw(v_threshold=0.6, v_nominal=1.0, width_nominal=1e-6),
    )
