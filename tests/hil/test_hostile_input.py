"""Hostile input: broken configs and requests end in one clear error, never a traceback.

A corpus of broken configs (each a small change to a shipped config) goes through `hil
train`: exit status 2, the message names the field, nothing is created. The worst (YAML
bombs, huge layers and ranges, endless delays) run in a subprocess limited to 1 GB of
address space and 10 s. A property-based fuzz mutates configs at random and checks that
loading either succeeds or raises ConfigError. Requests through the Python API (pulse
counts that overflow, NaN updates, float device ids) are refused by the benches.
"""

from __future__ import annotations

import copy
import math
import resource
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hil.bench import PulseRequest
from hil.cli import main
from hil.composition import build_bench
from hil.config import load_config
from hil.errors import ConfigError, SafetyError
from hil.programming import OpenLoopProgrammer
from tests.conftest import REPO
from tests.processes import HIL

SIM = yaml.safe_load((REPO / "bench_configs" / "sim-digits.yaml").read_text())
LAB = yaml.safe_load((REPO / "bench_configs" / "emulated-lab.yaml").read_text())
INF, NAN = math.inf, math.nan

#: (base, dotted path, value, text the error must contain). ``None`` deletes the key.
BROKEN: list[tuple[dict, str, Any, str]] = [
    # network
    (SIM, "network.inputs", 0, "network.inputs"),
    (SIM, "network.inputs", -3, "network.inputs"),
    (SIM, "network.inputs", 10**7, "network.inputs"),
    (SIM, "network.inputs", "many", "network.inputs"),
    (SIM, "network.inputs", 1.5, "network.inputs"),
    (SIM, "network.inputs", None, "network.inputs"),
    (SIM, "network.hidden", [10**7], "network.hidden"),
    (SIM, "network.hidden", [50_000, 50_000], "devices"),
    (SIM, "network.hidden", [0], "network.hidden"),
    (SIM, "network.hidden", [-4], "network.hidden"),
    (SIM, "network.hidden", list(range(1, 40)), "network.hidden"),
    (SIM, "network.hidden", "64", "network.hidden"),
    (SIM, "network.hidden", {"a": 1}, "network.hidden"),
    (SIM, "network.outputs", 0, "network.outputs"),
    (SIM, "network.outputs", 10**9, "network.outputs"),
    (SIM, "network.g_min", -1e-7, "network.g_min"),
    (SIM, "network.g_min", INF, "network.g_min"),
    (SIM, "network.g_max", INF, "network.g_max"),
    (SIM, "network.g_max", NAN, "network.g_max"),
    (SIM, "network.g_max", 1e9, "network.g_max"),
    (SIM, "network.g_min", 1.0, "g_min"),
    (SIM, "network.input_gain", INF, "network.input_gain"),
    (SIM, "network.input_gain", 0, "network.input_gain"),
    (SIM, "network.bias_voltages", [INF], "network.bias_voltages"),
    (SIM, "network.bias_voltages", [1e9], "network.bias_voltages"),
    (SIM, "network.amplifier_gain", -4, "network.amplifier_gain"),
    (SIM, "network.amplifier_gain", INF, "network.amplifier_gain"),
    (SIM, "network.diode.model", "zener", "network.diode.model"),
    (SIM, "network.diode.v_low", 1.0, "v_low"),
    (SIM, "network.diode.temperature_c", -300, "network.diode.temperature_c"),
    (SIM, "network.diode.saturation_current", 0, "network.diode.saturation_current"),
    (SIM, "network.g_init", 2.0, "g_init"),
    (SIM, "network.typo", 1, "network.typo"),
    # bench
    (SIM, "bench.engine", "magic", "bench.engine"),
    (SIM, "bench.kind", "quantum", "bench"),
    (SIM, "bench.limits.max_nudge_current", INF, "bench.limits.max_nudge_current"),
    (SIM, "bench.limits.max_input_voltage", INF, "bench.limits.max_input_voltage"),
    (SIM, "bench.limits.max_input_voltage", -1, "bench.limits.max_input_voltage"),
    (SIM, "bench.limits.compliance_current", 1e9, "bench.limits.compliance_current"),
    (SIM, "bench.limits.pulse_amplitude", [0.1, INF], "bench.limits.pulse_amplitude"),
    (SIM, "bench.limits.pulse_width", [1e-9, INF], "bench.limits.pulse_width"),
    (SIM, "bench.limits.pulse_width", [1.0, 0.1], "pulse_width"),
    (SIM, "bench.limits.max_pulses_per_request", 10**30, "max_pulses_per_request"),
    (SIM, "bench.limits.max_pulses_per_request", -1, "max_pulses_per_request"),
    (SIM, "bench.n_states", 10**30, "bench.n_states"),
    (SIM, "bench.n_states", 0, "bench.n_states"),
    (SIM, "bench.scheme", "V/4", "bench.scheme"),
    (SIM, "bench.seed", -1, "bench.seed"),
    (SIM, "bench.device.preset", "unobtainium", "bench.device.preset"),
    (SIM, "bench.device.overrides", {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}, "deeper"),
    (SIM, "bench.device.overrides", {f"k{i}": i for i in range(300)}, "256 entries"),
    (SIM, "bench.device.overrides", {"g_max": 1.0}, "g_min/g_max"),
    (SIM, "bench.converters.adc_bits", 64, "bench.converters.adc_bits"),
    (SIM, "bench.converters.adc_noise_v", INF, "bench.converters.adc_noise_v"),
    (SIM, "bench.converters.dac_full_scale_v", -1, "bench.converters.dac_full_scale_v"),
    (SIM, "bench.flagged_samples", "ignore", "bench.flagged_samples"),
    # data
    (SIM, "data.dataset", "cifar", "data.dataset"),
    (SIM, "data.test_fraction", 1.5, "data.test_fraction"),
    (SIM, "data.train_limit", 0, "data.train_limit"),
    (SIM, "data.train_limit", 10**30, "data.train_limit"),
    (SIM, "data.pool", 1000, "data.pool"),
    (SIM, "data.path", "x" * 5000, "data.path"),
    # training
    (SIM, "training.epochs", 0, "training.epochs"),
    (SIM, "training.epochs", 10**12, "training.epochs"),
    (SIM, "training.batch_size", 0, "training.batch_size"),
    (SIM, "training.learning_rate", INF, "training.learning_rate"),
    (SIM, "training.learning_rate", NAN, "training.learning_rate"),
    (SIM, "training.learning_rate", -1, "training.learning_rate"),
    (SIM, "training.learning_rate_decay", 2.0, "training.learning_rate_decay"),
    (SIM, "training.beta", INF, "training.beta"),
    (SIM, "training.variant", "sideways", "training.variant"),
    (SIM, "training.seed", -5, "training.seed"),
    (SIM, "training.seed", 2**40, "training.seed"),
    (SIM, "training.target_amplitude", INF, "training.target_amplitude"),
    (SIM, "training.programming.strategy", "psychic", "training.programming.strategy"),
    (SIM, "training.programming.max_iterations", 10**9, "training.programming.max_iterations"),
    (SIM, "training.programming.tolerance", INF, "training.programming.tolerance"),
    (SIM, "training.checkpoint_every", -1, "training.checkpoint_every"),
    (SIM, "training", 5, "training"),
    (SIM, "network", [1, 2], "network"),
    # names that would leave the runs folder
    (SIM, "name", "../../etc", "name"),
    (SIM, "name", "/tmp/elsewhere", "name"),
    (SIM, "name", "a/b", "name"),
    (SIM, "name", ".hidden", "name"),
    (SIM, "name", "x" * 200, "name"),
    # lab benches
    (LAB, "bench.settle_delay_s", 1e9, "bench.settle_delay_s"),
    (LAB, "bench.settle_delay_s", INF, "bench.settle_delay_s"),
    (LAB, "bench.averaging", 10**9, "bench.averaging"),
    (LAB, "bench.averaging", 0, "bench.averaging"),
    (LAB, "bench.read_voltage", INF, "bench.read_voltage"),
    (LAB, "bench.wiring.inputs", ["xbar:0-2000000000"], "channels"),
    (LAB, "bench.wiring.inputs", ["xbar:9-3"], "FIRST <= LAST"),
    (LAB, "bench.wiring.inputs", ["nowhere:1"], "names no instrument"),
    (LAB, "bench.wiring.inputs", ["xbar"], "INSTRUMENT:CHANNEL"),
    (LAB, "bench.wiring.outputs", ["xbar:1"], "outputs must be on"),
    (LAB, "bench.instruments.xbar.timeout_s", INF, "timeout_s"),
    (LAB, "bench.instruments.xbar.timeout_s", 1e9, "timeout_s"),
    (LAB, "bench.instruments.xbar.baudrate", 10**12, "baudrate"),
    (LAB, "bench.instruments.xbar.driver", "ouija", "driver"),
    (LAB, "bench.instruments.smu1.address", "a" * 1000, "address"),
    (LAB, "bench.limits.max_nudge_current", INF, "bench.limits.max_nudge_current"),
    (LAB, "bench.calibration", {"n_states": 10, "step_up": 1e-9}, "calibration"),
    (LAB, "bench.emulate.physics.engine", "magic", "engine"),
    (LAB, "bench.pulse_scheme", "V/9", "bench.pulse_scheme"),
]


def mutated(base: dict, dotted: str, value: Any) -> dict:
    config = copy.deepcopy(base)
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return config


def test_the_corpus_is_large_enough():
    assert len(BROKEN) >= 80


@pytest.mark.parametrize(
    "base, dotted, value, expected",
    BROKEN,
    ids=[f"{d}={str(v)[:20]}" for _, d, v, _ in BROKEN],
)
def test_a_broken_config_exits_2_naming_the_field(tmp_path, capsys, base, dotted, value, expected):
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(mutated(base, dotted, value)))
    data = tmp_path / "data"
    assert main(["train", str(path), "--data-dir", str(data), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert "Traceback" not in err and len(err) < 4000
    assert not data.exists() or not [p for p in data.iterdir() if p.is_dir() and p.name[0] != "."]


BOMB = """\
a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]
network: {inputs: 64, outputs: 10}
bench: {device: {overrides: {variability: *h}}}
"""

#: Files no YAML parser should be trusted with: each must be a one-line error.
TEXTS: dict[str, bytes] = {
    "yaml-bomb": BOMB.encode(),
    "deep-nesting": b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "not-utf8": b"network:\n  inputs: \xff\xfe\xfa\n",
    "binary": bytes(range(256)) * 4,
    "huge": b"# " + b"x" * (2 * 1024 * 1024) + b"\n",
    "not-a-mapping": b"- 1\n- 2\n",
    "bad-yaml": b"network: {inputs: [1, 2\n",
    "empty": b"",
    "huge-layer": yaml.safe_dump(mutated(SIM, "network.hidden", [10**7])).encode(),
    "endless-delay": yaml.safe_dump(mutated(LAB, "bench.settle_delay_s", 1e9)).encode(),
    "endless-range": yaml.safe_dump(
        mutated(LAB, "bench.wiring.inputs", ["xbar:0-2000000000"])
    ).encode(),
}


def _one_gigabyte() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_hostile_files_fail_fast_within_a_gigabyte(tmp_path, name):
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(TEXTS[name])
    done = subprocess.run(
        [HIL, "train", str(path), "--data-dir", str(tmp_path / "data"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=10,  # a config that makes `hil train` run on is a failure
        preexec_fn=_one_gigabyte,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert len(done.stderr) < 4000


LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.lists(st.integers(min_value=-5, max_value=10**8), max_size=5),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    paths = [prefix] if prefix else []
    if isinstance(tree, dict):
        for key, value in tree.items():
            paths += _paths(value, (*prefix, key))
    return paths


SIM_PATHS = _paths(SIM)
LAB_PATHS = _paths(LAB)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lab=st.booleans(),
    picks=st.lists(st.tuples(st.integers(min_value=0), LEAVES), min_size=1, max_size=3),
)
def test_random_mutations_load_or_fail_with_a_config_error(tmp_path_factory, lab, picks):
    base, paths = (LAB, LAB_PATHS) if lab else (SIM, SIM_PATHS)
    config = copy.deepcopy(base)
    for index, value in picks:
        *parents, leaf = paths[index % len(paths)]
        node = config
        for key in parents:
            node = node[key] if isinstance(node, dict) and isinstance(node.get(key), dict) else {}
        node[leaf] = value
    path = Path(tmp_path_factory.mktemp("fuzz")) / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(exc).startswith(("invalid config", "config file")), exc


# --- requests through the Python API ---------------------------------------------------------
@pytest.fixture
def bench():
    b = build_bench(load_config(REPO / "bench_configs" / "sim-digits.yaml"))
    yield b
    b.close()


def test_a_pulse_count_that_overflows_is_refused(bench):
    before = bench.read_conductances()
    counts = np.array([np.iinfo(np.int64).min, 1])
    with pytest.raises(SafetyError, match="exceeds max_pulses_per_request"):
        bench.pulse(PulseRequest(np.array([0, 1]), counts, 1.0, 1e-6))
    np.testing.assert_array_equal(bench.read_conductances(), before)
    assert not bench.pulse_counts.any()


def test_float_device_ids_are_refused_never_truncated(bench):
    with pytest.raises(SafetyError, match="integers"):
        bench.read_conductances(np.array([1.7]))
    with pytest.raises(SafetyError, match="integers"):
        PulseRequest(np.array([1.7]), np.array([1]), 1.0, 1e-6)


def test_nan_or_infinite_updates_never_become_pulses(bench):
    programmer = OpenLoopProgrammer(bench, np.random.default_rng(0))
    before = bench.read_conductances()
    for bad in (np.nan, np.inf, -np.inf):
        update = np.zeros(bench.network.n_devices)
        update[3] = bad
        with pytest.raises(SafetyError, match="NaN or infinity"):
            programmer.apply(update)
    np.testing.assert_array_equal(bench.read_conductances(), before)
    assert not bench.pulse_counts.any()
