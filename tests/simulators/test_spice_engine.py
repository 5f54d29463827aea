"""The SPICE engine against the native solver: same circuits, same node voltages within 1 uV.

Random networks (sizes, amplifiers, diode parameters, conductances over the whole bound range,
inputs and nudges) are settled by ngspice through :class:`SpiceEngine` and by the native
solver; every free node must agree within a microvolt while the clamping diodes really
conduct. Pulses, several engines sharing the one ngspice of the process, and every error path
(ideal diodes, missing library, rejected netlist, no operating point) are covered too, and a
short training run checks the whole stack on ngspice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from hil.bench import PulseRequest
from hil.cli import main
from hil.errors import ConfigError, ConvergenceError, EngineUnavailable, SimulationError
from hil.network import Network, NetworkSpec
from simulators.bench import SimulatedBench
from simulators.circuit import Circuit
from simulators.native import NativeSolver
from simulators.spice import NgSpice, NgSpiceConvergenceError, SpiceEngine, write_netlist
from simulators.spice.netlist import DIODE_MODEL
from tests.conftest import REPO
from tests.networks import small_spec

TOLERANCE_V = 1e-6
SPICE_CONFIG = REPO / "bench_configs" / "sim-digits-spice.yaml"


@pytest.fixture(scope="module", autouse=True)
def ngspice() -> NgSpice:
    try:
        return NgSpice()
    except EngineUnavailable as exc:
        if os.environ.get("CI"):
            raise  # CI installs libngspice0: a missing library there is a failure
        pytest.skip(f"ngspice shared library not installed (apt-get install libngspice0): {exc}")


def random_case(
    seed: int, inputs: int, hidden: list[int], outputs: int, amplifier: float | None, batch: int
) -> tuple[Circuit, np.ndarray, np.ndarray]:
    """A random network, conductances over all of [g_min, g_max], sources and nudges.

    Returns the circuit, source voltages (batch, n_sources) in V and nudge currents
    (batch, n_output_nodes) in A. Diode parameters vary with the seed so that the
    temperature, emission coefficient, saturation current and gmin of the netlist are
    exercised; the input gain is large enough for the clamps to conduct hard.
    """
    rng = np.random.default_rng(seed)
    v_low = -rng.uniform(0.1, 0.4)
    diode = {
        "model": "shockley",
        "v_low": v_low,
        "v_high": v_low + rng.uniform(0.2, 0.8),
        "saturation_current": float(10.0 ** rng.uniform(-15, -11)),
        "ideality": float(rng.uniform(1.0, 2.0)),
        "temperature_c": float(rng.uniform(0.0, 80.0)),
        "gmin": float(10.0 ** rng.uniform(-13, -10)),
    }
    g_min, g_max = 10.0 ** rng.uniform(-8, -7), 10.0 ** rng.uniform(-5.5, -4.5)
    spec = NetworkSpec(
        inputs=inputs,
        hidden=hidden,
        outputs=outputs,
        # the +x and -x sources cancel on average: a larger gain for wider layers keeps the
        # hidden nodes well beyond the clamp rails
        input_gain=float(rng.uniform(8.0, 15.0) * np.sqrt(inputs / 6)),
        bias_voltages=[float(rng.uniform(0.5, 1.5)), float(rng.uniform(-1.5, -0.5))],
        g_min=g_min,
        g_max=g_max,
        amplifier_gain=amplifier,
        diode=diode,
    )
    net = Network(spec)
    g = net.initial_conductances(rng)
    g[rng.choice(net.n_devices, 4, replace=False)] = [g_min, g_min, g_max, g_max]
    circuit = Circuit(net, g)
    sources = circuit.source_voltages(net.encode_inputs(rng.uniform(0, 1, (batch, inputs))))
    scale = rng.uniform(0.1, 1.0) * g_max  # about a volt's worth of nudge at g_max
    nudges = net.pair_currents(rng.normal(0.0, scale, (batch, outputs)))
    nudges[0] = 0.0  # one free phase in every batch
    return circuit, sources, nudges


def max_deviation(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


CASES = [
    # seed, inputs, hidden, outputs, amplifier gain, batch
    (0, 6, [5, 4], 3, None, 6),
    (1, 6, [5, 4], 3, 2.0, 6),
    (2, 20, [12], 4, None, 5),
    (3, 20, [12], 4, 4.0, 5),
    (4, 16, [10, 8, 6], 5, 3.0, 4),
    (5, 40, [24], 10, None, 3),
    (6, 40, [24], 10, 4.0, 3),
    (7, 3, [2], 1, 1.5, 8),
]


@pytest.mark.parametrize("case", CASES, ids=[f"seed{c[0]}-{c[1]}-{c[2]}-amp{c[4]}" for c in CASES])
def test_every_node_matches_native_within_a_microvolt(case) -> None:
    circuit, sources, nudges = random_case(*case)
    spice = SpiceEngine(circuit).solve(sources, nudges)
    native = NativeSolver(circuit).solve(sources, nudges)
    assert max_deviation(spice.layers, native.layers) <= TOLERANCE_V
    # ngspice's answer satisfies Kirchhoff's current law of the element view by itself
    assert spice.residual < 1e-12
    # the clamps really conduct (>= 1 uA through a diode) somewhere, in some sample
    net = circuit.network
    hidden = np.concatenate(spice.layers[:-1], axis=1)
    assert np.abs(circuit.diode_currents(hidden)).max() > 1e-6
    assert hidden.shape[1] == len(net.hidden_nodes)


@pytest.mark.parametrize("amplifier", [None, 4.0])
def test_crossed_shockley_rails_match_native(amplifier) -> None:
    # 1N4148 junctions on crossed rails (upper clamp's source at -0.12 V, lower's at
    # +0.12 V: they clamp near +-0.3 V), the rails benchmarks/robustness.py uses
    circuit, sources, nudges = random_case(3, 20, [12], 4, amplifier, 5)
    net = circuit.network
    diode = net.spec.diode.model_copy(
        update={"v_low": 0.12, "v_high": -0.12, "saturation_current": 2.52e-9, "ideality": 1.752}
    )
    spec = net.spec.model_copy(update={"diode": diode})
    circuit = Circuit(Network(spec), circuit.conductances)
    spice = SpiceEngine(circuit).solve(sources, nudges)
    native = NativeSolver(circuit).solve(sources, nudges)
    assert max_deviation(spice.layers, native.layers) <= TOLERANCE_V
    hidden = np.concatenate(spice.layers[:-1], axis=1)
    # the clamps conduct hard somewhere, and at 0 V the two share a standing current
    assert np.abs(circuit.diode_currents(hidden)).max() > 1e-6
    assert hidden.min() < -0.2 and hidden.max() > 0.2
    assert np.all(np.abs(hidden) < 0.6)


def test_solution_shapes_and_zero_nudges_default() -> None:
    circuit, sources, _ = random_case(11, 6, [5, 4], 3, 2.0, 3)
    solution = SpiceEngine(circuit).solve(sources)
    assert [layer.shape for layer in solution.layers] == [(3, 5), (3, 4), (3, 6)]
    native = NativeSolver(circuit).solve(sources, np.zeros((3, 6)))
    assert max_deviation(solution.layers, native.layers) <= TOLERANCE_V
    with pytest.raises(ValueError, match=r"nudges must have shape \(3, 6\)"):
        SpiceEngine(circuit).solve(sources, np.zeros((3, 5)))


# -- the netlist ---------------------------------------------------------------------------------


def test_netlist_elements() -> None:
    spec = small_spec("shockley", 2.0)
    spec = spec.model_copy(update={"diode": spec.diode.model_copy(update={"temperature_c": 40.0})})
    net = Network(spec)
    g = net.initial_conductances(np.random.default_rng(0))
    netlist = write_netlist(Circuit(net, g), marker="mk")
    lines = netlist.lines
    assert lines[-1] == ".end"
    assert any(line.startswith(".save ") and "mk" in line.split() for line in lines)
    # resistors in ohms at full precision
    first = next(line for line in lines if line.startswith("r0 "))
    assert float(first.split()[-1]) == 1.0 / g[0]
    # an amplifier: VCVS of gain A, a 0 V sense source into the line, CCCS of gain 1/A
    node = int(net.layers[0].nodes[0])
    assert f"eamp{node} xamp{node} 0 n{node} 0 2.0" in lines
    assert f"vamp{node} xamp{node} a{node} dc 0" in lines
    assert f"famp{node} n{node} 0 vamp{node} 0.5" in lines
    # nudges inject into their node; diodes share one model; options carry T and gmin
    out = int(net.output_nodes[0])
    assert f"inudge0 0 n{out} dc 0" in lines
    assert f"dhi{node} n{node} chi0 {DIODE_MODEL}" in lines
    options = next(line for line in lines if line.startswith(".options"))
    assert "temp=40.0 tnom=40.0" in options and "gmin=1e-12" in options
    assert "reltol=1e-9" in options and "abstol=1e-15" in options and "vntol=1e-12" in options
    assert netlist.sources[: net.n_input_sources] == [f"vin{i}" for i in range(12)]
    assert netlist.resistors[5] == "r5" and netlist.nudges[1] == "inudge1"
    assert netlist.layers[-1] == [f"n{k}" for k in net.output_nodes]
    # re-rendering with other conductances gives what writing afresh gives
    g2 = net.initial_conductances(np.random.default_rng(1))
    assert netlist.render(g2) == write_netlist(Circuit(net, g2), marker="mk").lines
    with pytest.raises(ConfigError, match="positive and finite, got 0.0 for device 3"):
        netlist.render(np.where(np.arange(net.n_devices) == 3, 0.0, g2))


def test_ideal_diodes_are_refused() -> None:
    net = Network(small_spec("ideal"))
    circuit = Circuit(net, net.initial_conductances(np.random.default_rng(0)))
    with pytest.raises(ConfigError, match="ideal diodes .* have no SPICE counterpart") as info:
        SpiceEngine(circuit)
    assert "diode.model: shockley" in str(info.value)
    with pytest.raises(ConfigError, match="no SPICE counterpart"):
        SimulatedBench(net, engine="spice")
    with pytest.raises(ConfigError, match="no SPICE counterpart"):
        write_netlist(circuit)


# -- benches: pulses, several engines, foreign circuits -------------------------------------------


def bench_pair(seed: int = 3) -> tuple[SimulatedBench, SimulatedBench]:
    net = Network(small_spec("shockley", 2.0))
    return (
        SimulatedBench(net, engine="spice", seed=seed),
        SimulatedBench(net, engine="native", seed=seed),
    )


def drive(net: Network, seed: int, batch: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = net.encode_inputs(rng.uniform(0, 1, (batch, net.n_inputs)))
    nudges = net.pair_currents(rng.normal(0, 2e-6, (batch, net.n_classes)))
    return inputs, nudges


def assert_benches_agree(spice: SimulatedBench, native: SimulatedBench, seed: int) -> None:
    np.testing.assert_array_equal(spice.read_conductances(), native.read_conductances())
    inputs, nudges = drive(spice.network, seed)
    for n in (None, nudges):
        a, b = spice.settle(inputs, n).node_voltages, native.settle(inputs, n).node_voltages
        assert np.abs(a - b).max() <= TOLERANCE_V


def test_pulses_reach_the_spice_circuit() -> None:
    spice, native = bench_pair()
    assert_benches_agree(spice, native, 0)
    n = spice.network.n_devices
    # a few devices: pushed with alter; then nearly all: the netlist is reloaded
    for seed, ids in enumerate([np.array([0, 7, 40]), np.arange(0, n, 1)], start=1):
        rng = np.random.default_rng(seed)
        counts = rng.integers(-300, 300, len(ids))
        request = PulseRequest(ids, counts, 1.0, 1e-6)
        spice.pulse(request)
        native.pulse(request)
        assert_benches_agree(spice, native, seed)
    # a restored checkpoint is pushed as well
    state = native.state_dict()
    state["conductances"] = np.random.default_rng(9).permutation(state["conductances"])
    spice.load_state_dict(state)
    native.load_state_dict(state)
    assert_benches_agree(spice, native, 9)


def test_engines_share_ngspice_and_survive_foreign_circuits(ngspice: NgSpice) -> None:
    first, native_first = bench_pair(seed=1)
    second, native_second = bench_pair(seed=2)  # same netlist shape, other conductances
    for seed in range(3):  # interleaved: each settle must solve its own circuit
        assert_benches_agree(first, native_first, seed)
        assert_benches_agree(second, native_second, seed)
    # someone loads another circuit behind the engines' backs, or clears ngspice
    ngspice.operating_point(["other", "v1 in 0 dc 1", "r1 in n20 1k", "r2 n20 0 1k"])
    assert_benches_agree(first, native_first, 5)
    # pulses pushed while a foreign circuit is loaded (r1 exists there, r50 does not)
    ngspice.operating_point(["other", "v1 in 0 dc 1", "r1 in n20 1k", "r2 n20 0 1k"])
    for bench in (first, native_first):
        bench.pulse(PulseRequest(np.array([1, 50]), np.array([40, -40]), 1.0, 1e-6))
    assert_benches_agree(first, native_first, 7)
    ngspice.reset()
    assert_benches_agree(first, native_first, 6)


# -- errors: each is clear and leaves the engine usable ------------------------------------------


def test_missing_library_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    net = Network(small_spec("shockley"))
    monkeypatch.setenv("NGSPICE_LIBRARY", "/nonexistent/libngspice.so.0")
    with pytest.raises(EngineUnavailable, match="libngspice0") as info:
        SimulatedBench(net, engine="spice")
    assert "apt-get install libngspice0" in str(info.value)
    monkeypatch.delenv("NGSPICE_LIBRARY")
    spice, native = bench_pair()
    assert_benches_agree(spice, native, 0)


@pytest.mark.parametrize(
    "options, message",
    [
        ("reltol=abc", "bad type given for option reltol"),
        ("gmin={nosuchparam}", r"Undefined parameter \[nosuchparam\]"),  # fatal: reloads ngspice
    ],
)
def test_rejected_netlist_raises_ngspice_message_then_recovers(options, message) -> None:
    spice, native = bench_pair()
    assert_benches_agree(spice, native, 0)
    engine = spice.engine
    assert isinstance(engine, SpiceEngine)
    engine.options = options  # takes effect when the netlist is loaded again: next settle
    inputs, _ = drive(spice.network, 1)
    spice.pulse(PulseRequest(np.array([3]), np.array([5]), 1.0, 1e-6))
    with pytest.raises(SimulationError, match=message) as info:
        spice.settle(inputs)
    assert "ngspice rejected the netlist" in str(info.value)
    engine.options = ""
    native.pulse(PulseRequest(np.array([3]), np.array([5]), 1.0, 1e-6))
    assert_benches_agree(spice, native, 1)


def test_no_operating_point_raises_convergence_error_then_recovers() -> None:
    spice, native = bench_pair()
    engine = spice.engine
    assert isinstance(engine, SpiceEngine)
    # no plain Newton, no gmin or source stepping: ngspice is left with its transient-op
    # fallback, which is not a DC solution, so every sample fails
    engine.options = "noopiter gminsteps=0 srcsteps=0"
    spice.pulse(PulseRequest(np.array([0]), np.array([1]), 1.0, 1e-6))
    native.pulse(PulseRequest(np.array([0]), np.array([1]), 1.0, 1e-6))
    inputs, _ = drive(spice.network, 2)
    with pytest.raises(ConvergenceError, match="no operating point for sample 0 of the batch"):
        spice.settle(inputs)
    engine.options = ""
    assert_benches_agree(spice, native, 2)


class FailingOp:
    """Stands in for ngspice, failing the ``n``-th operating point as ngspice does."""

    def __init__(self, real: NgSpice, n: int) -> None:
        self.real, self.n, self.calls = real, n, 0
        self.lock = real.lock

    def run_op(self) -> dict[str, float]:
        self.calls += 1
        if self.calls == self.n:
            raise NgSpiceConvergenceError("ngspice 'op' did not converge: Timestep too small")
        return self.real.run_op()

    def __getattr__(self, name: str):
        return getattr(self.real, name)


def test_failed_sample_is_named_and_the_next_settle_works() -> None:
    spice, native = bench_pair()
    engine = spice.engine
    assert isinstance(engine, SpiceEngine)
    inputs, nudges = drive(spice.network, 3)
    engine.ngspice = FailingOp(engine.ngspice, n=3)  # type: ignore[assignment]
    with pytest.raises(ConvergenceError, match="sample 2 of the batch: .*Timestep too small"):
        spice.settle(inputs, nudges)
    assert_benches_agree(spice, native, 3)


# -- training on ngspice -------------------------------------------------------------------------


@pytest.mark.slow
def test_short_training_run_on_spice(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = yaml.safe_load(SPICE_CONFIG.read_text())
    assert config["bench"]["engine"] == "spice"
    config["data"].update(train_limit=300, test_limit=100)
    config["training"].update(epochs=2, batch_size=4)  # more steps from few samples
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    code = main(["train", str(path), "--out", str(tmp_path / "run"), "--json", "--quiet"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs"] == 2
    assert summary["test_accuracy"] >= 0.7  # the native engine reaches 0.81 on this variant
