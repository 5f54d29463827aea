"""Drills on a lab bench: `hil train` in its own process, the instruments emulated here.

The emulators run in the test process (as the instruments would on the bench), the
config the subprocess gets has no ``emulate`` section (a physical bench at their
addresses), so what the emulators report afterwards is what the instruments would show.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import yaml

from hil.composition import build_simulated_bench
from hil.config import load_config
from hil.network import Network
from simulators.instruments.emulated_lab import EmulatedLab, physics_config
from tests.labs import quick_emulated_lab
from tests.processes import HIL, wait_until


@pytest.fixture
def bench_file(tmp_path):
    """Emulators for a small emulated-lab.yaml, and a physical-bench config pointing at them."""
    raw = quick_emulated_lab(epochs=200)
    source = tmp_path / "emulated.yaml"
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
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(raw))
    try:
        yield path, lab
    finally:
        lab.stop()


def smus_live(lab: EmulatedLab) -> bool:
    return any(
        lab.smu_state(name, ch).output_on
        for name in lab.smus
        for ch in lab.smus[name].model.channels
    )


def test_sigterm_leaves_every_output_off_and_a_second_process_touches_nothing(bench_file, tmp_path):
    path, lab = bench_file
    first = subprocess.Popen(
        [HIL, "train", str(path), "--out", str(tmp_path / "a" / "run"), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: smus_live(lab), what="the first process to arm the SMUs")
        time.sleep(0.5)  # well into training
        second = subprocess.run(
            [HIL, "train", str(path), "--out", str(tmp_path / "b" / "run"), "--quiet"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 1, second.stderr
        assert "is in use by PID" in second.stderr and f"PID {first.pid}" in second.stderr
        assert first.poll() is None and smus_live(lab)  # the first is unharmed, still live
        assert not (tmp_path / "b" / "run").exists()

        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 143, err
    assert "interrupted by SIGTERM: bench left in its safe state" in err
    assert lab.is_safe()  # the emulators confirm: every output off, DACs at 0 V, board idle
