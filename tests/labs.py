"""Emulated labs shared by the tests: small networks wired to emulated instruments."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from drivers.lab_bench import LabBench
from hil.bench import Bench
from hil.composition import build_bench, build_simulated_bench
from hil.config import RunConfig, load_config
from hil.network import Network
from simulators.instruments.emulated_lab import EmulatedLab, physics_config
from tests.conftest import REPO
from tests.networks import small_spec

FAST = 0.5  # s: instrument timeout of the test labs, so that fault tests stay quick


def small_lab_bench_section(**changes: Any) -> dict[str, Any]:
    """A lab bench section for ``small_spec()`` (6 inputs, hidden [5, 4], 3 classes).

    One XBAR board (12 input DACs, 6 bias DACs, 9 ADCs, three tiles on its lines) and every
    SMU family on the outputs: a 2636B (TSP, both channels), a B2902A (both channels) and
    two 2400s. ``changes`` replace top-level keys.
    """
    section: dict[str, Any] = {
        "kind": "lab",
        "instruments": {
            "xbar": {"driver": "serial_board", "timeout_s": FAST},
            "smu1": {"driver": "keithley2600", "model": "2636B", "timeout_s": FAST},
            "smu2": {"driver": "keysight_b2900", "timeout_s": FAST},
            "smu3": {"driver": "keithley2400", "timeout_s": FAST},
            "smu4": {"driver": "keithley2400", "timeout_s": FAST},
        },
        "wiring": {
            "inputs": ["xbar:0-11"],
            "bias": ["xbar:12-17"],
            "hidden": ["xbar:0-8"],
            "outputs": ["smu1:smua", "smu1:smub", "smu2:1", "smu2:2", "smu3:1", "smu4:1"],
        },
        "limits": {"pulse_amplitude": [0.1, 3.0], "pulse_width": [1e-8, 1e-3]},
        "emulate": {
            "physics": {"engine": "native"},
            "boards": {
                "xbar": {
                    "adc_range": [-2.0, 2.0],
                    "adc_bits": 18,
                    "pulse_amplitude": [-3.0, 3.0],
                    "pulse_width": [1e-8, 1e-3],
                }
            },
        },
    }
    section.update(copy.deepcopy(changes))
    return section


def tsp_lab_bench_section(n_smus: int, inputs: int, hidden: list[int]) -> dict[str, Any]:
    """A lab of one board and ``n_smus`` 2636Bs (two outputs each), for any layer sizes."""
    n_bias = 2 * (len(hidden) + 1)
    outputs = [f"smu{k}:{ch}" for k in range(1, n_smus + 1) for ch in ("smua", "smub")]
    return {
        "kind": "lab",
        "instruments": {
            "xbar": {"driver": "serial_board", "timeout_s": FAST},
            **{
                f"smu{k}": {"driver": "keithley2600", "timeout_s": FAST}
                for k in range(1, n_smus + 1)
            },
        },
        "wiring": {
            "inputs": [f"xbar:0-{2 * inputs - 1}"],
            "bias": [f"xbar:{2 * inputs}-{2 * inputs + n_bias - 1}"],
            "hidden": [f"xbar:0-{sum(hidden) - 1}"],
            "outputs": outputs,
        },
        "limits": {"pulse_amplitude": [0.1, 2.0], "pulse_width": [1e-8, 1e-6]},
        "emulate": {"boards": {"xbar": {"adc_range": [-2.0, 2.0], "adc_bits": 18}}},
    }


def quick_emulated_lab(epochs: int = 1) -> dict[str, Any]:
    """bench_configs/emulated-lab.yaml with 8 hidden nodes, fast timeouts and a few samples:
    the whole digits lab path, quick to set up (a raw config mapping)."""
    raw = yaml.safe_load((REPO / "bench_configs" / "emulated-lab.yaml").read_text())
    raw["network"]["hidden"] = [8]
    raw["bench"]["wiring"]["hidden"] = ["xbar:0-7"]
    for inst in raw["bench"]["instruments"].values():
        inst["timeout_s"] = FAST
    raw["data"].update({"train_limit": 48, "test_limit": 16})
    raw["training"]["epochs"] = epochs
    return raw


def small_run_config(seed: int = 11, bench: dict[str, Any] | None = None, **spec: Any) -> RunConfig:
    """A run config of ``small_spec("shockley", 2.0, **spec)`` on a lab (default the small
    lab above), seeded like the native conformance bench."""
    network = small_spec("shockley", 2.0, **spec).model_dump()
    return RunConfig.model_validate(
        {
            "network": network,
            "bench": bench or small_lab_bench_section(),
            "training": {"seed": seed},
        }
    )


def small_lab(seed: int = 11, bench: dict[str, Any] | None = None, **spec: Any) -> LabBench:
    """A connected LabBench on a freshly started emulated lab (``bench.emulator``)."""
    lab = build_bench(small_run_config(seed, bench, **spec))
    assert isinstance(lab, LabBench)
    return lab


def physical_lab(folder: Path, epochs: int, **training: Any) -> tuple[Path, EmulatedLab]:
    """Emulators for a small emulated-lab.yaml (``training`` changed as given), and a
    physical-bench config at their addresses (``folder/lab.yaml``: no ``emulate`` section,
    so a bench built from it sees instruments only, as on a real bench)."""
    raw = quick_emulated_lab(epochs=epochs)
    raw["training"].update(training)
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "emulated.yaml"
    source.write_text(yaml.safe_dump(raw))
    config = load_config(source)
    physics = build_simulated_bench(
        Network(config.network), physics_config(config.bench), config.training.seed
    )
    lab = EmulatedLab(physics, config.bench).start()
    cal = physics.calibration
    bench = raw["bench"]
    del bench["emulate"]
    bench["calibration"] = {
        "amplitude_v": cal.amplitude_v,
        "width_s": cal.width_s,
        "step_up": cal.step_up,
        "step_down": cal.step_down,
    }
    for name, address in lab.addresses.items():
        bench["instruments"][name]["address"] = address
    path = folder / "lab.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, lab


def simulated_twin(config: RunConfig) -> Bench:
    """The simulated bench an emulated lab's physics is: same network, same seed."""
    assert config.bench.kind == "lab" and config.bench.emulate is not None
    physics = config.bench.emulate.physics
    return build_simulated_bench(Network(config.network), physics, config.training.seed)
