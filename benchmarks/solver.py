"""Native solver vs ngspice: the same random samples settled by both engines.

A random network (Shockley diodes, conductances uniform over [g_min, g_max], optional
bidirectional amplifiers) is settled for random inputs in [0, 1] and random output nudges by
the native solver (one batched call, best of several repeats) and by ngspice through
:class:`~simulators.spice.engine.SpiceEngine` (one operating point per sample). Setting up
(writing and loading the netlist, building the energy terms) is timed apart. Prints one JSON
line last::

    {"layers": [784, 100, 10], "native_ms_per_sample": ..., "spice_ms_per_sample": ...,
     "speedup": ..., "max_abs_dv_volts": ..., ...}

``speedup`` is spice_ms_per_sample / native_ms_per_sample; ``max_abs_dv_volts`` is the largest
difference of any free node's voltage between the two engines.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from hil.network import Network, NetworkSpec
from simulators.circuit import Circuit
from simulators.native import NativeSolver
from simulators.spice.engine import SpiceEngine


def parse_layers(text: str) -> tuple[int, list[int], int]:
    """``"784,100,10"`` -> (inputs, hidden sizes, classes)."""
    sizes = [int(part) for part in text.split(",")]
    if len(sizes) < 3 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"--layers needs inputs,hidden...,classes (positive), got {text!r}"
        )
    return sizes[0], sizes[1:-1], sizes[-1]


def build(
    layers: tuple[int, list[int], int], amplifier: float | None, input_gain: float, seed: int
) -> Circuit:
    """A random network with Shockley diodes and its conductances."""
    inputs, hidden, classes = layers
    spec = NetworkSpec(
        inputs=inputs,
        hidden=hidden,
        outputs=classes,
        input_gain=input_gain,
        amplifier_gain=amplifier,
        diode={"model": "shockley", "v_low": -0.3, "v_high": 0.3},
    )
    net = Network(spec)
    return Circuit(net, net.initial_conductances(np.random.default_rng(seed)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=parse_layers, default=parse_layers("784,100,10"))
    parser.add_argument("--samples", type=int, default=20, help="samples settled by both")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--amplifier", type=float, default=None, help="amplifier gain A")
    parser.add_argument(
        "--input-gain", type=float, default=None, help="V per unit input (10*sqrt(inputs/64))"
    )
    parser.add_argument("--repeats", type=int, default=5, help="native timing: best of N")
    parser.add_argument(
        "--native-tol", type=float, default=1e-14, help="native solver's current tolerance (A)"
    )
    args = parser.parse_args()

    inputs, hidden, classes = args.layers
    # +x and -x cancel on average: scale the gain with the fan-in so that diodes conduct
    gain = args.input_gain or 10.0 * float(np.sqrt(inputs / 64))
    circuit = build(args.layers, args.amplifier, gain, args.seed)
    net = circuit.network
    rng = np.random.default_rng(args.seed + 1)
    sources = circuit.source_voltages(net.encode_inputs(rng.uniform(0, 1, (args.samples, inputs))))
    nudges = net.pair_currents(rng.normal(0.0, 0.2 * net.spec.g_max, (args.samples, classes)))

    start = time.perf_counter()
    native = NativeSolver(circuit, tol_current=args.native_tol)
    circuit.energy_terms()
    native_setup = time.perf_counter() - start
    best = np.inf
    for _ in range(args.repeats):
        start = time.perf_counter()
        reference = native.solve(sources, nudges)
        best = min(best, time.perf_counter() - start)

    start = time.perf_counter()
    spice = SpiceEngine(circuit)
    spice.solve(net.source_voltages_template[None, :])  # loads the netlist (inputs at 0 V)
    spice_setup = time.perf_counter() - start
    start = time.perf_counter()
    result = spice.solve(sources, nudges)
    spice_seconds = time.perf_counter() - start

    dv = max(
        float(np.max(np.abs(a - b))) for a, b in zip(result.layers, reference.layers, strict=True)
    )
    hidden_v = np.concatenate(result.layers[:-1], axis=1)
    conducting = float(np.mean(np.abs(circuit.diode_currents(hidden_v)) > 1e-8))
    native_ms = 1e3 * best / args.samples
    spice_ms = 1e3 * spice_seconds / args.samples
    print(
        json.dumps(
            {
                "layers": [inputs, *hidden, classes],
                "samples": args.samples,
                "amplifier_gain": args.amplifier,
                "devices": net.n_devices,
                "native_ms_per_sample": round(native_ms, 4),
                "spice_ms_per_sample": round(spice_ms, 2),
                "speedup": round(spice_ms / native_ms, 1),
                "max_abs_dv_volts": float(f"{dv:.3g}"),
                "native_setup_s": round(native_setup, 3),
                "spice_setup_s": round(spice_setup, 3),
                "input_gain_v": round(gain, 3),
                "hidden_diodes_over_10na": round(conducting, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
