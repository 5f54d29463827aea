"""Memristor pulse-response models and their non-idealities, for simulated benches.

One module per concept:

- ``base``: the ``DeviceModel`` contract (step per pulse as a function of G and direction).
- ``analytic``: constant, linear, soft-bounds and exponential step laws.
- ``lookup_table`` / ``measured``: CrossSim pulse-response tables and the model sampling them.
- ``pulse_law``: switching threshold, amplitude and width scaling (what makes disturb).
- ``variability``: device-to-device, cycle-to-cycle, stuck and read non-idealities.
- ``presets``: named models with their sources (``ideal``, ``reram``, ``ecram``,
  ``taox_measured``, ``enode_measured``) and the model registry.
- ``array``: ``DeviceArray``, the state of every device of a network, pulsed vectorised.

Typical use::

    model = presets.reram(g_min=1e-7, g_max=1e-5)
    devices = DeviceArray(model, n_devices=network.n_devices, seed=0, g_init=g0)
    outcome = devices.apply_pulses(ids, counts, amplitude_v=1.5, width_s=100e-9)
    g_read = devices.read(ids)
"""

from simulators.devices.analytic import (
    ConstantStepModel,
    ExponentialStepModel,
    LinearStepModel,
    SoftBoundsModel,
)
from simulators.devices.array import DeviceArray, PulseOutcome
from simulators.devices.base import DeviceModel
from simulators.devices.lookup_table import PulseResponseTable, load_table
from simulators.devices.measured import MeasuredModel
from simulators.devices.presets import (
    PRESETS,
    AnyDeviceModel,
    ecram,
    enode_measured,
    ideal,
    model_from_dict,
    preset,
    reram,
    taox_measured,
)
from simulators.devices.pulse_law import PulseLaw
from simulators.devices.variability import Variability

__all__ = [
    "PRESETS",
    "AnyDeviceModel",
    "ConstantStepModel",
    "DeviceArray",
    "DeviceModel",
    "ExponentialStepModel",
    "LinearStepModel",
    "MeasuredModel",
    "PulseLaw",
    "PulseOutcome",
    "PulseResponseTable",
    "SoftBoundsModel",
    "Variability",
    "ecram",
    "enode_measured",
    "ideal",
    "load_table",
    "model_from_dict",
    "preset",
    "reram",
    "taox_measured",
]
