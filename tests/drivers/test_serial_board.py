"""The XBAR board protocol over a real pty: emulator firmware, driver validation and faults."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import serial

from drivers.serial_board import PulseError, PulseTally, SerialBoard
from hil.errors import InstrumentError, SafetyError
from hil.vocabulary import PulseScheme
from simulators.instruments.board_server import BoardServer, BoardSpec, LinearBackend

SPEC = BoardSpec()
LSB = (SPEC.adc_range[1] - SPEC.adc_range[0]) / (2**SPEC.adc_bits - 1)


@pytest.fixture
def server() -> Iterator[BoardServer]:
    with BoardServer() as srv:
        yield srv


@pytest.fixture
def board(server: BoardServer) -> Iterator[SerialBoard]:
    drv = SerialBoard(server.port, name="xbar", timeout=1.0).open()
    yield drv
    drv.close()


@pytest.fixture
def raw(server: BoardServer) -> Iterator[Callable[[bytes], str]]:
    """Write raw bytes (a newline is added) and return the one reply line."""
    port = serial.serial_for_url(server.port, baudrate=115200, timeout=1.0)

    def ask(line: bytes) -> str:
        port.write(line + b"\n")
        return port.read_until(b"\n").decode("ascii").rstrip("\n")

    yield ask
    port.close()


# -- identification, bulk I/O ---------------------------------------------------------------
def test_identification_and_capabilities(board: SerialBoard) -> None:
    assert board.identity.model == "XBAR-8x8"
    assert board.identity.firmware == SPEC.firmware
    caps = board.capabilities
    assert (caps.n_dac, caps.n_adc, caps.adc_bits, caps.rows, caps.cols) == (16, 16, 16, 8, 8)
    assert caps.dac_range == SPEC.dac_range and caps.adc_range == SPEC.adc_range
    assert caps.pulse_amplitude == (-2.0, 2.0) and caps.pulse_width == (1e-8, 1e-6)
    assert caps.pulse_count == (1, 1000) and caps.read_voltage == (-0.5, 0.5)


def test_unknown_model_is_refused_and_port_closed(server: BoardServer) -> None:
    drv = SerialBoard(server.port, name="xbar", models=("XBAR-64x64",))
    with pytest.raises(InstrumentError, match="'XBAR-8x8' is not one of: XBAR-64x64"):
        drv.open()
    with pytest.raises(InstrumentError, match="port is closed"):
        drv.abort()


def test_missing_port_raises_instrument_error() -> None:
    with pytest.raises(InstrumentError, match="cannot open"):
        SerialBoard("/dev/does-not-exist", name="xbar").open()


def test_bulk_set_and_read_round_trip(board: SerialBoard) -> None:
    board.mode("network")
    board.set_dacs({0: 0.5, 3: -0.25, 15: 0.125})
    reading = board.read_adcs([0, 3, 15])
    assert reading.channels == (0, 3, 15)
    np.testing.assert_allclose(reading.values, [-0.25, 0.125, -0.0625], atol=LSB)
    values = np.linspace(-1.0, 1.0, SPEC.n_dac)
    board.set_dacs(values)
    np.testing.assert_allclose(board.read_dacs(), values)
    reading = board.read_adcs()
    np.testing.assert_allclose(reading.values, -0.5 * values, atol=LSB)
    assert reading.overflow == () and not reading.overflowed.any()


@pytest.mark.parametrize("n", [1, 4, 16])
def test_settle_costs_two_commands_whatever_the_channel_count(
    server: BoardServer, board: SerialBoard, n: int
) -> None:
    board.mode("network")
    sent, received = board.commands_sent, server.commands_received
    board.set_dacs(np.full(n, 0.1))
    board.read_adcs(list(range(n)))
    assert board.commands_sent - sent == 2
    assert server.commands_received - received == 2


def test_adc_overflow_is_data_not_an_error() -> None:
    backend = LinearBackend(SPEC, gain=4.0 * np.eye(SPEC.n_adc, SPEC.n_dac))
    with BoardServer(backend) as srv, SerialBoard(srv.port, name="xbar") as drv:
        drv.mode("network")
        drv.set_dacs({0: 0.5, 1: -0.1})
        reading = drv.read_adcs([0, 1, 0])
        np.testing.assert_allclose(reading.values, [1.0, -0.4, 1.0], atol=LSB)
        assert reading.overflow == (0,)  # listed twice by the board, once here
        np.testing.assert_array_equal(reading.overflowed, [True, False, True])
        assert drv.read_adcs([1]).overflow == ()  # a reading's status is its own


# -- modes, pulses, abort -------------------------------------------------------------------
def test_mode_rules(raw: Callable[[bytes], str]) -> None:
    assert raw(b"MODE?") == "OK IDLE"
    assert raw(b"DAC:SET 0:0.1").startswith("ERR 105 ")
    assert raw(b"MODE NETWORK") == "OK MODE NETWORK"
    assert raw(b"PULSE 0 0 1.0 1e-07 1 V/2") == (
        "ERR 105 PULSE needs mode PROGRAMMING, board is in NETWORK"
    )
    assert raw(b"READ 0 0 0.2").startswith("ERR 105 ")
    assert raw(b"DAC:SET 0:0.1") == "OK DAC:SET 1"
    assert raw(b"mode programming") == "OK MODE PROGRAMMING"
    assert raw(b"DAC?").startswith("OK 0,0,")  # a mode change returns the DACs to 0 V
    assert raw(b"ADC:READ 0").startswith("ERR 105 ")


def test_driver_maps_err_reply_to_instrument_error(board: SerialBoard) -> None:
    board.mode("network")
    with pytest.raises(InstrumentError) as err:
        board.pulse(0, 0, 1.0, 1e-7)
    assert err.value.instrument == "xbar"
    assert err.value.command == "PULSE 0 0 1.0 1e-07 1 V/3"
    assert err.value.reason.startswith("ERR 105 ")


def test_pulses_move_conductance_and_v3_spares_neighbours(
    server: BoardServer, board: SerialBoard
) -> None:
    board.mode("programming")
    g0 = board.read_device(2, 3, 0.2) / 0.2
    board.pulse(2, 3, 1.5, 1e-7, count=10, scheme="V/3")
    assert board.read_device(2, 3, 0.2) / 0.2 == pytest.approx(g0 + 10e-6)
    g = server.backend.conductance.copy()
    board.pulse(2, 3, -2.0, 1e-7, count=1, scheme="V/2")  # half-selected devices see 1 V
    assert server.backend.conductance[2, 0] == pytest.approx(g[2, 0] - 1e-6)
    assert server.backend.conductance[5, 5] == pytest.approx(g[5, 5])
    board.pulse_many([(0, 0, 1.2, 3), (7, 7, -1.2, 2)], width=1e-7, scheme="V/3")
    assert server.backend.conductance[7, 7] == pytest.approx(g[7, 7] - 2e-6)


def test_abort_returns_every_line_to_zero(server: BoardServer, board: SerialBoard) -> None:
    board.mode("network")
    board.set_dacs(np.full(SPEC.n_dac, 0.7))
    board.abort()
    np.testing.assert_array_equal(board.read_dacs(), np.zeros(SPEC.n_dac))
    np.testing.assert_array_equal(server.backend.dac, np.zeros(SPEC.n_dac))
    assert board.read_mode() == "idle"
    assert server.backend.mode == "idle"


# -- the emulator's own validation, on raw lines --------------------------------------------
@pytest.mark.parametrize(
    ("mode", "line", "expected"),
    [
        ("IDLE", b"FOO 1 2", "ERR 100 unknown command 'FOO'"),
        ("IDLE", b"*IDN? extra", "ERR 101 *IDN? expects 0 arguments, got 1"),
        ("IDLE", b"MODE TURBO", "ERR 101 mode 'TURBO'"),
        ("IDLE", b"\xff\xfe", "ERR 101 line contains non-ASCII bytes"),
        ("NETWORK", b"DAC:SET", "ERR 101 DAC:SET expects 1 arguments, got 0"),
        ("NETWORK", b"DAC:SET 0=0.1", "ERR 101 DAC entry '0=0.1'"),
        ("NETWORK", b"DAC:SET 0:abc", "ERR 101 DAC channel 0 value 'abc' is not a number"),
        ("NETWORK", b"DAC:SET 0:nan", "ERR 101 DAC channel 0 value 'nan' is not a number"),
        ("NETWORK", b"DAC:SET 0:0.1,0:0.2", "ERR 101 DAC channel 0 appears twice"),
        ("NETWORK", b"DAC:SET 0:1.5", "ERR 103 DAC channel 0 value 1.5 V out of range [-1, 1] V"),
        ("NETWORK", b"DAC:SET 16:0.1", "ERR 104 DAC channel 16 out of range [0, 15]"),
        ("NETWORK", b"ADC:READ 0,99", "ERR 104 ADC channel 99 out of range [0, 15]"),
        ("NETWORK", b"ADC:READ 0,-1", "ERR 101 ADC channel '-1' is not a non-negative integer"),
        ("PROGRAMMING", b"PULSE 0 0 1.0", "ERR 101 PULSE expects 6 arguments, got 3"),
        ("PROGRAMMING", b"PULSE 0 0 1.0 1e-07 1 V/4", "ERR 101 scheme 'V/4'"),
        ("PROGRAMMING", b"PULSE 0 8 1.0 1e-07 1 V/2", "ERR 104 column 8 out of range [0, 7]"),
        (
            "PROGRAMMING",
            b"PULSE 0 0 3.5 1e-07 1 V/2",
            "ERR 103 pulse amplitude 3.5 V out of range [-2, 2] V",
        ),
        (
            "PROGRAMMING",
            b"PULSE 0 0 1.0 0.001 1 V/3",
            "ERR 103 pulse width 0.001 s out of range [1e-08, 1e-06] s",
        ),
        (
            "PROGRAMMING",
            b"PULSE 0 0 1.0 1e-07 0 V/3",
            "ERR 103 pulse count 0 out of range [1, 1000]",
        ),
        ("PROGRAMMING", b"PULSE:MANY 1e-07 V/2 0:0:1.0", "ERR 101 pulse entry '0:0:1.0'"),
        ("PROGRAMMING", b"READ 0 0 0.9", "ERR 103 read voltage 0.9 V out of range [-0.5, 0.5] V"),
    ],
)
def test_emulator_answers_bad_lines_with_documented_errors(
    raw: Callable[[bytes], str], mode: str, line: bytes, expected: str
) -> None:
    assert raw(b"MODE " + mode.encode()) == f"OK MODE {mode}"
    assert raw(line).startswith(expected)
    assert raw(b"*IDN?").startswith("OK HILLAB,")  # still alive


def test_bulk_commands_are_atomic(raw: Callable[[bytes], str]) -> None:
    raw(b"MODE NETWORK")
    assert raw(b"DAC:SET 0:0.5,1:9").startswith("ERR 103 ")
    assert raw(b"DAC?").startswith("OK 0,0,")


def test_empty_lines_are_ignored_and_long_lines_refused(
    server: BoardServer, raw: Callable[[bytes], str]
) -> None:
    assert raw(b"\n \r\n\r\n*IDN?\r") == f"OK HILLAB,XBAR-8x8,EMU0001,{SPEC.firmware}"
    too_long = SPEC.max_line + 904
    assert raw(b"A" * too_long) == f"ERR 102 line too long ({too_long} > {SPEC.max_line} bytes)"
    assert raw(b"\x00\x07garbage;;;").startswith("ERR 100 ")
    assert raw(b"MODE?") == "OK IDLE"


# -- validation before sending --------------------------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.set_dacs({0: 1.5}),
        lambda b: b.set_dacs({16: 0.0}),
        lambda b: b.set_dacs({0: float("nan")}),
        lambda b: b.set_dacs(np.zeros(17)),
        lambda b: b.read_adcs([0, 16]),
        lambda b: b.pulse(0, 0, 2.5, 1e-7),
        lambda b: b.pulse(0, 0, 1.0, 1e-3),
        lambda b: b.pulse(0, 0, 1.0, 1e-7, count=0),
        lambda b: b.pulse(8, 0, 1.0, 1e-7),
        lambda b: b.pulse_many([(0, 0, 1.0, 1), (0, 1, -2.1, 1)], width=1e-7),
        lambda b: b.read_device(0, 0, 0.6),
    ],
)
def test_driver_refuses_out_of_range_before_sending(
    server: BoardServer, board: SerialBoard, call: Callable[[SerialBoard], None]
) -> None:
    sent, received = board.commands_sent, server.commands_received
    with pytest.raises(SafetyError, match="out of range"):
        call(board)
    assert board.commands_sent == sent
    assert server.commands_received == received


def test_safety_error_names_quantity_value_and_bounds(board: SerialBoard) -> None:
    with pytest.raises(SafetyError) as err:
        board.pulse(0, 0, 2.5, 1e-7)
    assert str(err.value) == "xbar: pulse amplitude 2.5 V out of range [-2, 2] V; nothing sent"


def test_long_requests_respect_max_line() -> None:
    spec = BoardSpec(max_line=64)
    with BoardServer(spec=spec) as srv, SerialBoard(srv.port, name="xbar") as drv:
        drv.mode("network")
        sent = drv.commands_sent
        with pytest.raises(ValueError, match="exceeds MAX_LINE 64; nothing sent"):
            drv.set_dacs(np.full(16, 0.123456789))
        assert drv.commands_sent == sent
        drv.mode("programming")
        sent = drv.commands_sent
        drv.pulse_many([(r, c, 1.5, 1) for r in range(8) for c in range(8)], width=1e-7)
        assert drv.commands_sent - sent > 1  # split into lines of at most 64 bytes
        np.testing.assert_allclose(srv.backend.conductance, 50e-6 + 1e-6)


# -- faults ---------------------------------------------------------------------------------
def test_timeout_raises_then_recovers(server: BoardServer) -> None:
    with SerialBoard(server.port, name="xbar", timeout=0.2) as drv:
        drv.mode("network")
        server.go_silent()
        with pytest.raises(InstrumentError) as err:
            drv.read_adcs([0, 1])
        assert (err.value.instrument, err.value.command) == ("xbar", "ADC:READ 0,1")
        assert "no reply within 0.2 s" in err.value.reason
        server.go_silent(False)
        assert drv.read_mode() == "network"


def test_a_long_pulse_train_is_waited_for_and_a_silent_board_still_times_out() -> None:
    """A ``PULSE:MANY`` line's reply is awaited for ``timeout`` plus its pulse train: 400
    pulses of 0.8 ms each on the board outlast a 0.2 s timeout without being one, while a
    silent board is still a timeout (after the train's time), its pulses uncertain."""
    spec = BoardSpec(pulse_width=(1e-8, 1e-3))
    entries = [(0, col, 1.2, 100) for col in range(4)]
    with (
        BoardServer(spec=spec, pulse_seconds=0.8e-3) as srv,
        SerialBoard(srv.port, name="xbar", timeout=0.2) as drv,
    ):
        drv.mode("programming")
        before = srv.backend.conductance.copy()
        assert drv.pulse_many(entries, 1e-3).completed == 4  # 0.32 s of pulses at least
        moved = srv.backend.conductance != before
        assert moved[0, :4].all() and moved.sum() == 4
        budget = 0.2 + 400 * (1e-3 + drv.pulse_allowance)  # 0.64 s
        srv.go_silent()
        with pytest.raises(PulseError, match=f"no reply within {budget:g} s") as err:
            drv.pulse_many(entries, 1e-3)
        assert err.value.tally.uncertain == 4 and err.value.tally.completed == 0


def test_injected_error_reply(server: BoardServer, board: SerialBoard) -> None:
    server.fail_next()
    with pytest.raises(InstrumentError, match="ERR 110 hardware fault: injected"):
        board.mode("network")
    board.mode("network")


def test_disconnect_raises_and_safe_state_only_logs(
    server: BoardServer, board: SerialBoard, caplog: pytest.LogCaptureFixture
) -> None:
    server.disconnect()
    with pytest.raises(InstrumentError) as err:
        board.mode("network")
    assert (err.value.instrument, err.value.command) == ("xbar", "MODE NETWORK")
    with caplog.at_level(logging.ERROR, logger="drivers.serial_board"):
        board.safe_state()
    assert "xbar: could not reach the safe state" in caplog.text


def test_closed_port_raises_and_context_exit_is_quiet(server: BoardServer) -> None:
    with SerialBoard(server.port, name="xbar") as drv:
        drv.close()
        with pytest.raises(InstrumentError, match="'ABORT': port is closed"):
            drv.abort()
    # leaving the block ran safe_state() on a closed port without raising


def test_server_stops_its_thread() -> None:
    before = threading.active_count()
    srv = BoardServer().start()
    assert threading.active_count() == before + 1
    srv.stop()
    srv.stop()
    assert threading.active_count() == before


# -- pulses cut short -------------------------------------------------------------------------
STEP = 1e-6  # LinearBackend's conductance step per pulse (S)
G0 = 50e-6  # and its initial conductance


def test_a_pulse_many_cut_short_says_how_far_it_got(
    server: BoardServer, raw: Callable[[bytes], str]
) -> None:
    assert raw(b"MODE PROGRAMMING") == "OK MODE PROGRAMMING"
    server.fail_after(4)  # V/3 at 1.2 V: the neighbours see 0.4 V and stay put
    line = b"PULSE:MANY 1e-07 V/3 0:0:1.2:3,0:1:1.2:2,1:1:1.2:5"
    assert raw(line) == "ERR 110 completed=1 partial=1 hardware fault: injected"
    g = server.backend.conductance
    np.testing.assert_allclose(g[[0, 0, 1], [0, 1, 1]], [G0 + 3 * STEP, G0 + STEP, G0])
    assert raw(line) == "OK PULSE:MANY 3"  # the fault is spent
    server.fail_after(0)
    assert (
        raw(b"PULSE 2 2 1.2 1e-07 4 V/3")
        == "ERR 110 completed=0 partial=0 hardware fault: injected"
    )
    assert raw(b"PULSE 2 2 1.2 1e-07 4 V/3") == "OK PULSE 2 2 4"


class _FailingBackend(LinearBackend):
    """Refuses every pulse to device (1, 1), as a driver stage that trips would."""

    def pulse(
        self, row: int, col: int, amplitude: float, width: float, count: int, scheme: PulseScheme
    ) -> None:
        if (row, col) == (1, 1):
            raise RuntimeError("line driver tripped")
        super().pulse(row, col, amplitude, width, count, scheme)


def test_a_backend_fault_reports_the_entries_before_it() -> None:
    with BoardServer(_FailingBackend(SPEC)) as srv, SerialBoard(srv.port, name="xbar") as drv:
        drv.mode("programming")
        with pytest.raises(PulseError) as err:
            drv.pulse_many([(0, 0, 1.2, 3), (1, 1, 1.2, 2), (2, 2, 1.2, 1)], width=1e-7)
        assert err.value.reason.startswith(
            "ERR 110 completed=1 partial=0 hardware fault: RuntimeError: line driver tripped; "
            "1 of 3 devices pulsed in full, 3 of 6 pulses delivered"
        )
        tally = err.value.tally
        assert (tally.completed, tally.partial, tally.uncertain) == (1, 0, 0)
        assert tally.delivered().tolist() == [3, 0, 0]


def test_the_tally_follows_the_lines_of_a_long_pulse_many() -> None:
    spec = BoardSpec(max_line=64)
    with BoardServer(spec=spec) as srv, SerialBoard(srv.port, name="xbar") as drv:
        drv.mode("programming")
        entries = [(r, c, 1.5, 1 + (r + c) % 3) for r in range(8) for c in range(8)]
        total = sum(n for *_, n in entries)
        srv.fail_after(50)
        sent = drv.commands_sent
        tally = PulseTally()
        with pytest.raises(PulseError) as err:
            drv.pulse_many(entries, width=1e-7, tally=tally)
        assert err.value.tally is tally
        delivered = tally.delivered()
        assert delivered.sum() == tally.pulses_delivered == 50 and tally.uncertain == 0
        expected = np.minimum(np.cumsum([n for *_, n in entries]), 50)
        np.testing.assert_array_equal(np.cumsum(delivered), expected)  # in order, no gap
        assert f"{tally.completed} of 64 devices pulsed in full" in err.value.reason
        assert f"50 of {total} pulses delivered" in err.value.reason
        lines = drv.commands_sent - sent
        assert 1 < lines < 24  # several lines, and none after the one that failed
        # V/3 at 1.5 V: every unselected device sees 0.5 V, below the threshold
        np.testing.assert_allclose(
            srv.backend.conductance.ravel() - 50e-6, delivered * STEP, atol=1e-15
        )
        assert drv.pulse_many(entries, width=1e-7).done


def test_an_error_without_completed_leaves_the_line_uncertain(
    server: BoardServer, board: SerialBoard
) -> None:
    board.mode("programming")
    server.fail_next(110, "hardware fault: old firmware")  # no completed= field
    with pytest.raises(PulseError) as err:
        board.pulse_many([(0, 0, 1.0, 3), (1, 1, 1.0, 2)], width=1e-7)
    assert err.value.tally.uncertain == 2 and err.value.tally.pulses_uncertain == 5
    assert err.value.reason == (
        "ERR 110 hardware fault: old firmware; 0 of 2 devices pulsed in full, 0 of 5 pulses "
        "delivered; 2 device(s) (5 pulses) uncertain: the board did not say whether it pulsed "
        "them"
    )


def test_a_refused_pulse_many_is_certain_to_have_done_nothing(board: SerialBoard) -> None:
    board.mode("network")  # PULSE:MANY needs programming mode: ERR 105, nothing applied
    with pytest.raises(PulseError, match="ERR 105 .*; 0 of 1 devices pulsed in full") as err:
        board.pulse_many([(0, 0, 1.0, 3)], width=1e-7)
    assert err.value.tally.uncertain == 0 and not err.value.tally.delivered().any()


def test_a_pulse_many_timing_out_is_uncertain(server: BoardServer) -> None:
    with SerialBoard(server.port, name="xbar", timeout=0.2) as drv:
        drv.mode("programming")
        server.go_silent()
        with pytest.raises(PulseError, match=r"no reply within 0.2 s; .* 1 device\(s\)") as err:
            drv.pulse_many([(0, 0, 1.0, 3)], width=1e-7)
        assert err.value.tally.uncertain == 1
        server.go_silent(False)
