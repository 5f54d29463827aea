"""Drills on a lab bench: `hil train` in its own process, the instruments emulated here.

The emulators run in the test process (as the instruments would on the bench), the
config the subprocess gets has no ``emulate`` section (a physical bench at their
addresses), so what the emulators report afterwards is what the instruments would show.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import numpy as np
import pytest

from hil.run_files import RunDirectory
from simulators.instruments.emulated_lab import EmulatedLab
from tests.labs import physical_lab
from tests.processes import HIL, wait_until


@pytest.fixture
def bench_file(tmp_path):
    path, lab = physical_lab(tmp_path, epochs=200)
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
    # every pulse the devices received is in the counters a resume continues from
    at_exit = RunDirectory(tmp_path / "a" / "run").read_bench_at_exit()
    assert at_exit is not None and at_exit["pulse_counts"].sum() > 0
    np.testing.assert_array_equal(at_exit["pulse_counts"], lab.physics.pulse_counts)


def test_the_first_process_finishes_with_the_readings_of_an_undisturbed_run(tmp_path):
    """While a second process is refused, the first trains exactly as it would alone."""
    alone_path, alone = physical_lab(tmp_path / "alone", epochs=20)
    shared_path, shared = physical_lab(tmp_path / "shared", epochs=20)
    try:
        undisturbed = subprocess.run(
            [HIL, "train", str(alone_path), "--out", str(tmp_path / "u" / "run"), "--json"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert undisturbed.returncode == 0, undisturbed.stderr
        first = subprocess.Popen(
            [HIL, "train", str(shared_path), "--out", str(tmp_path / "a" / "run"), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until(lambda: smus_live(shared), what="the first process to arm the SMUs")
        second = subprocess.run(
            [HIL, "train", str(shared_path), "--out", str(tmp_path / "b" / "run")],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert first.poll() is None, "the first run ended before the second tried"
        assert second.returncode == 1 and "is in use by PID" in second.stderr
        out, err = first.communicate(timeout=300)
    finally:
        alone.stop()
        shared.stop()
    assert first.returncode == 0, err
    got = json.loads(out.splitlines()[-1])
    want = json.loads(undisturbed.stdout.splitlines()[-1])
    for key in ("test_accuracy", "train_accuracy", "test_loss", "pulses"):
        assert got[key] == want[key], key
