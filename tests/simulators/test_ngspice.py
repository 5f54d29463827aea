"""The ngspice binding against the real libngspice0: accuracy, constants, errors, recovery.

The reference solutions are independent numpy Newton solves of the same circuits using the
diode equations of ngspice's dioload.c (forward exponential, cubic reverse tail below
-3 N Vt, gmin in parallel with the junction), so a wrong constant, a wrong gmin or a loose
ngspice tolerance shows up as a numeric mismatch.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from hil.errors import ConvergenceError, EngineUnavailable, SimulationError
from hil.vocabulary import BOLTZMANN, ELEMENTARY_CHARGE, NOMINAL_TEMPERATURE
from simulators.spice import (
    NGSPICE_EPSMIN,
    NGSPICE_GMIN,
    TIGHT_OP_OPTIONS,
    NgSpice,
    NgSpiceConvergenceError,
    NgSpiceError,
)

VT = BOLTZMANN / ELEMENTARY_CHARGE * NOMINAL_TEMPERATURE
VT_SI2019 = 1.380649e-23 / 1.602176634e-19 * NOMINAL_TEMPERATURE


@pytest.fixture(scope="module")
def ng() -> NgSpice:
    try:
        return NgSpice()
    except EngineUnavailable as exc:
        pytest.skip(f"ngspice shared library not installed (apt-get install libngspice0): {exc}")


@pytest.fixture
def sim(ng: NgSpice) -> Iterator[NgSpice]:
    yield ng
    ng.reset()


# -- reference solutions ----------------------------------------------------------------------


def diode_current(vd: float, i_s: float, n: float = 1.0, vt: float = VT) -> tuple[float, float]:
    """Current and conductance of an ngspice level-1 diode without series resistance."""
    vte = n * vt
    if vd >= -3 * vte:
        ex = math.exp(vd / vte)
        return i_s * (ex - 1) + NGSPICE_GMIN * vd, i_s * ex / vte + NGSPICE_GMIN
    arg = (3 * vte / (vd * math.e)) ** 3
    return -i_s * (1 + arg) + NGSPICE_GMIN * vd, i_s * 3 * arg / vd + NGSPICE_GMIN


def newton_1d(f, x0: float) -> float:
    """Solve f(x) = (residual, derivative) to machine precision, steps capped at 0.1 V."""
    x = x0
    for _ in range(500):
        r, g = f(x)
        dx = -r / g
        x += max(-0.1, min(0.1, dx))
        if abs(dx) < 1e-16 + 1e-15 * abs(x):
            return x
    raise AssertionError("reference Newton did not converge")


def source_resistor_diode(vs: float, r: float, i_s: float, n: float, vt: float = VT) -> float:
    """Voltage across a diode fed from ``vs`` through ``r``."""

    def f(v: float) -> tuple[float, float]:
        i, g = diode_current(v, i_s, n, vt)
        return (v - vs) / r + i, 1 / r + g

    return newton_1d(f, 0.5)


def two_diode_network(vin: float) -> np.ndarray:
    """Nodes (a, b) of TWO_DIODE_NET, solved by damped Newton in numpy."""
    r1, r2, r3, i1 = 1e3, 2e3, 1e4, 1e-4
    x = np.array([0.5, 0.2])
    for _ in range(500):
        a, b = x
        id1, g1 = diode_current(a - b, 1e-14, 1.0)
        id2, g2 = diode_current(b, 1e-12, 2.0)
        res = np.array([(a - vin) / r1 + a / r3 + id1, -id1 + b / r2 + id2 - i1])
        jac = np.array([[1 / r1 + 1 / r3 + g1, -g1], [-g1, g1 + 1 / r2 + g2]])
        dx = np.linalg.solve(jac, -res)
        step = np.max(np.abs(dx))
        x = x + dx * min(1.0, 0.1 / step) if step > 0 else x
        if step < 1e-15 * max(1.0, float(np.max(np.abs(x)))):
            return x
    raise AssertionError("reference Newton did not converge")


TWO_DIODE_NET = [
    "two diodes",
    "v1 in 0 dc 2",
    "r1 in a 1k",
    "d1 a b dm",
    "r2 b 0 2k",
    "d2 b 0 dm2",
    "r3 a 0 10k",
    "i1 0 b dc 0.1m",
    ".model dm D(IS=1e-14 N=1)",
    ".model dm2 D(IS=1e-12 N=2)",
]


# -- linear circuits ----------------------------------------------------------------------------


def test_voltage_divider_matches_analytic(sim: NgSpice) -> None:
    op = sim.operating_point(["divider", "v1 in 0 dc 5", "r1 in out 1k", "r2 out 0 3.3k"])
    assert op["in"] == pytest.approx(5.0, abs=1e-12)
    assert abs(op["out"] - 5.0 * 3.3e3 / 4.3e3) < 1e-9
    # SPICE sign: current flows out of the + terminal, so the branch current is negative
    assert abs(op["v1#branch"] + 5.0 / 4.3e3) < 1e-15


def test_numeric_node_names_are_plain_keys(sim: NgSpice) -> None:
    op = sim.operating_point(["numbers", "v1 1 0 dc 2", "r1 1 2 1k", "r2 2 0 1k"])
    assert set(op) == {"1", "2", "v1#branch"}
    assert abs(op["2"] - 1.0) < 1e-12


def test_alter_then_rerun_gives_new_answer(sim: NgSpice) -> None:
    sim.operating_point(["divider", "vin1 in 0 dc 1", "r1 in out 1k", "r2 out 0 1k"])
    sim.alter("vin1", 0.3, "dc")
    assert abs(sim.run_op()["out"] - 0.15) < 1e-12
    sim.alter("r2", 3e3)
    assert abs(sim.run_op()["out"] - 0.3 * 0.75) < 1e-12
    sim.command("alter vin1 dc = -2")
    assert abs(sim.run_op()["out"] + 1.5) < 1e-12
    assert sim.plots() == ["const"]  # every op plot was freed


def test_dc_sweep_vector(sim: NgSpice) -> None:
    sim.load_circuit(["sweep", "v1 in 0 dc 0", "r1 in out 1k", "r2 out 0 1k"])
    plot = sim.run("dc v1 0 1 0.25")
    assert plot.startswith("dc")
    np.testing.assert_allclose(sim.vector("out"), [0, 0.125, 0.25, 0.375, 0.5], atol=1e-12)
    assert set(sim.vectors()) >= {"out", "in", "v-sweep"}


# -- diodes, constants and tolerances ----------------------------------------------------------


@pytest.mark.parametrize("vs", [5.0, 1.0, 0.7, 0.3, -2.0])
def test_diode_matches_shockley_with_gmin(sim: NgSpice, vs: float) -> None:
    netlist = [
        "diode",
        f"v1 in 0 dc {vs}",
        "r1 in a 1k",
        "d1 a 0 dm",
        ".model dm D(IS=1e-14 N=1)",
        TIGHT_OP_OPTIONS,
    ]
    expected = source_resistor_diode(vs, 1e3, 1e-14, 1.0)
    assert abs(sim.operating_point(netlist)["a"] - expected) < 1e-9


def test_thermal_voltage_uses_codata_2014_constants(sim: NgSpice) -> None:
    netlist = ["diode", "v1 in 0 dc 5", "r1 in a 1k", "d1 a 0 dm", ".model dm D(IS=1e-14 N=5)"]
    got = sim.operating_point([*netlist, TIGHT_OP_OPTIONS])["a"]
    assert abs(got - source_resistor_diode(5.0, 1e3, 1e-14, 5.0)) < 1e-12
    # the exact SI 2019 constants would put the node ~1 uV higher: ngspice 39 does not use them
    assert abs(got - source_resistor_diode(5.0, 1e3, 1e-14, 5.0, vt=VT_SI2019)) > 5e-7


def test_saturation_current_is_clamped_to_epsmin(sim: NgSpice) -> None:
    def diode_voltage(i_s: float) -> float:
        netlist = ["t", "i1 0 a dc 1", "d1 a 0 dm", f".model dm D(IS={i_s})", TIGHT_OP_OPTIONS]
        return sim.operating_point(netlist)["a"]

    floor = diode_voltage(NGSPICE_EPSMIN)
    assert diode_voltage(1e-40) == floor
    assert abs(floor - VT * math.log1p(1 / NGSPICE_EPSMIN)) < 1e-9


def test_gmin_is_in_parallel_with_the_junction(sim: NgSpice) -> None:
    # 1 nA forced backwards through a diode: gmin carries almost all of it
    netlist = ["t", "i1 a 0 dc 1e-9", "d1 a 0 dm", ".model dm D(IS=1e-14)"]
    expected = -(1e-9 - 1e-14) / NGSPICE_GMIN
    assert sim.operating_point([*netlist, TIGHT_OP_OPTIONS])["a"] == pytest.approx(expected)
    # .options gmin changes the diodes' gmin too
    changed = sim.operating_point([*netlist, TIGHT_OP_OPTIONS + " gmin=1e-10"])["a"]
    assert changed == pytest.approx(-(1e-9 - 1e-14) / 1e-10)


def test_reverse_tail_is_the_cubic_spice_model(sim: NgSpice) -> None:
    i_s, i_rev = 1e-6, 0.99e-6
    got = sim.operating_point(
        ["t", f"i1 a 0 dc {i_rev}", "d1 a 0 dm", f".model dm D(IS={i_s})", TIGHT_OP_OPTIONS]
    )["a"]

    def f(v: float) -> tuple[float, float]:
        i, g = diode_current(v, i_s)
        return i + i_rev, g

    assert abs(got - newton_1d(f, -0.1)) < 1e-12
    assert abs(got - VT * math.log(1 - i_rev / i_s)) > 1e-2  # a pure exponential is far off


def test_two_diode_network_tight_options_within_a_nanovolt(sim: NgSpice) -> None:
    sim.load_circuit([*TWO_DIODE_NET, TIGHT_OP_OPTIONS])
    worst = 0.0
    for vin in np.linspace(-5.0, 5.0, 41):
        sim.alter("v1", float(vin), "dc")
        op = sim.run_op()
        worst = max(worst, float(np.max(np.abs([op["a"], op["b"]] - two_diode_network(vin)))))
    assert worst < 1e-9


# -- errors and recovery -----------------------------------------------------------------------


def test_bad_netlist_raises_with_ngspice_message_then_recovers(sim: NgSpice) -> None:
    sim.operating_point(["good", "v1 in 0 dc 1", "r1 in 0 1k"])
    with pytest.raises(SimulationError, match="could not find a valid modelname") as info:
        sim.load_circuit(["bad", "v1 in 0 dc 1", "d1 in 0 nomodel"])
    assert isinstance(info.value, NgSpiceError)
    assert any("nomodel" in line for line in info.value.output)
    with pytest.raises(NgSpiceError, match="unknown subckt"):
        sim.load_circuit(["bad", "v1 in 0 dc 1", "x1 in 0 nosuchsub"])
    # the previous good circuit must not be silently solved in place of the rejected one
    with pytest.raises(NgSpiceError, match="aren't any circuits loaded"):
        sim.run_op()
    op = sim.operating_point(["good", "v1 in 0 dc 2", "r1 in mid 1k", "r2 mid 0 1k"])
    assert abs(op["mid"] - 1.0) < 1e-12


def test_fatal_error_reloads_library_and_recovers(sim: NgSpice) -> None:
    for _ in range(2):  # twice: the reloaded library must survive another fatal error
        with pytest.raises(NgSpiceError, match=r"Undefined parameter \[undefined_thing\]"):
            sim.load_circuit(["fatal", "v1 in 0 dc {undefined_thing}", "r1 in 0 1k"])
        op = sim.operating_point(["after", "v1 in 0 dc 3", "r1 in mid 1k", "r2 mid 0 2k"])
        assert abs(op["mid"] - 2.0) < 1e-12


def test_bad_command_and_alter_raise(sim: NgSpice) -> None:
    sim.load_circuit(["t", "v1 in 0 dc 1", "r1 in 0 1k"])
    with pytest.raises(NgSpiceError, match="no such command"):
        sim.command("frobnicate")
    with pytest.raises(NgSpiceError, match="no such device or model name r9"):
        sim.alter("r9", 1e3)
    with pytest.raises(ValueError, match="non-finite"):
        sim.alter("r1", float("nan"))
    with pytest.raises(ValueError, match="longer than"):
        sim.command("echo " + "x" * 2000)
    assert abs(sim.run_op()["v1#branch"] + 1e-3) < 1e-15


def test_nonconverging_op_raises_convergence_error(sim: NgSpice) -> None:
    # 1 mA forced into a reverse-biased diode with gmin=0: no operating point exists
    netlist = ["t", "i1 0 a dc 1m", "d1 0 a dm", ".model dm D(IS=1e-14)", ".options gmin=0"]
    sim.load_circuit(netlist)
    with pytest.raises(ConvergenceError, match="Timestep too small") as info:
        sim.run_op()
    assert isinstance(info.value, NgSpiceConvergenceError)
    assert "simulation(s) aborted" in str(info.value)
    assert sim.plots() == ["const"]  # the failed plot is gone
    # the circuit stays loaded: reversing the source makes it solvable
    sim.alter("i1", -1e-3, "dc")
    assert abs(sim.run_op()["a"] + VT * math.log1p(1e-3 / 1e-14)) < 1e-6


def test_parallel_voltage_sources_raise_convergence_error(sim: NgSpice) -> None:
    with pytest.raises(ConvergenceError, match="op simulation"):
        sim.operating_point(["loop", "v1 a 0 dc 1", "v2 a 0 dc 2", "r1 a 0 1k"])


def test_floating_node_rejected_unless_transient_op_allowed(
    sim: NgSpice, caplog: pytest.LogCaptureFixture
) -> None:
    netlist = ["float", "i1 0 a dc 1m", "c1 a 0 1u"]
    with pytest.raises(ConvergenceError, match="transient-op fallback"):
        sim.operating_point(netlist)
    sim.allow_transient_op = True
    try:
        with caplog.at_level(logging.WARNING, logger="simulators.spice"):
            sim.operating_point(netlist)
    finally:
        sim.allow_transient_op = False
    messages = [r.getMessage() for r in caplog.records if r.name == "simulators.spice"]
    assert any("singular matrix" in m for m in messages)
    assert any("transient-op fallback" in m for m in messages)


def test_errors_and_warnings_become_log_records(
    sim: NgSpice, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="simulators.spice"):
        sim.operating_point(["t", "v1 in 0 dc 1", "r1 in 0"])  # no value: ngspice warns
        with pytest.raises(NgSpiceError):
            sim.command("alter nosuch 1")
    levels = {(r.levelno, r.getMessage()) for r in caplog.records}
    assert any(lvl == logging.WARNING and "resistance to low" in m for lvl, m in levels)
    assert any(lvl == logging.ERROR and "no such device" in m for lvl, m in levels)


def test_missing_library_raises_engine_unavailable() -> None:
    with pytest.raises(EngineUnavailable, match="libngspice0") as info:
        NgSpice("/nonexistent/libngspice.so.0")
    assert "apt-get install libngspice0" in str(info.value)


# -- process-global state ----------------------------------------------------------------------


def test_instances_share_one_library(ng: NgSpice) -> None:
    other = NgSpice()
    assert other.lock is ng.lock
    assert ng.version.split(".")[0].isdigit()


def test_threads_take_turns(sim: NgSpice) -> None:
    results: dict[int, float] = {}
    errors: list[Exception] = []

    def work(k: int) -> None:
        try:
            for _ in range(20):
                with sim.lock:  # load + solve must not interleave with another thread
                    op = sim.operating_point(
                        [f"t{k}", f"v1 in 0 dc {k}", "r1 in m 1k", "r2 m 0 1k"]
                    )
                assert abs(op["m"] - k / 2) < 1e-12
            results[k] = op["m"]
        except Exception as exc:  # reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == {1: 0.5, 2: 1.0, 3: 1.5, 4: 2.0}


def test_repeated_solves_leave_no_result_plots(sim: NgSpice) -> None:
    # (The memory of many re-solves is measured by benchmarks/ngspice_memory.py.)
    sim.load_circuit(TWO_DIODE_NET)
    for i in range(200):
        sim.alter("v1", i * 1e-3, "dc")
        sim.run_op()
    assert sim.plots() == ["const"]
