"""Board protocol version 2 over a real pty: frames (CRC, sequence numbers), resync, bulk reads,
ABORT during a batch, the watchdog, exclusive ports and the fallback to version 1."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import serial

from drivers import board_protocol as frames
from drivers.bench_check import check_bench
from drivers.serial_board import PulseError, PulseTally, SerialBoard, plan_reads
from hil.composition import build_check_bench
from hil.errors import InstrumentError
from simulators.instruments import board_framing
from simulators.instruments.board_server import BoardServer, BoardSpec, LinearBackend
from tests.labs import small_lab_bench_section, small_run_config

SPEC = BoardSpec()
V1_SPEC = BoardSpec(protocol=1, firmware="1.0.0")
STEP, G0 = 1e-6, 50e-6  # LinearBackend's conductance step per pulse and start (S)


@pytest.fixture
def server() -> Iterator[BoardServer]:
    with BoardServer() as srv:
        yield srv


@pytest.fixture
def board(server: BoardServer) -> Iterator[SerialBoard]:
    drv = SerialBoard(server.port, name="xbar", timeout=1.0).open()
    yield drv
    drv.close()


class RawHost:
    """A host written by hand: bare lines, or version-2 frames after ``PROTO 2``."""

    def __init__(self, path: str) -> None:
        self.port = serial.serial_for_url(path, baudrate=115200, timeout=1.0)
        self.seq = 0

    def line(self, data: bytes) -> bytes:
        self.port.write(data + b"\n")
        return self.port.read_until(b"\n")

    def v2(self) -> RawHost:
        assert self.line(b"PROTO 2") == b"OK PROTO 2\n"
        return self

    def ask(self, text: str) -> tuple[int, str]:
        self.seq = frames.next_seq(self.seq)
        self.port.write(frames.encode(self.seq, text))
        return frames.decode(self.port.read_until(b"\n"))

    def close(self) -> None:
        self.port.close()


@pytest.fixture
def raw(server: BoardServer) -> Iterator[RawHost]:
    host = RawHost(server.port)
    yield host
    host.close()


# -- frames --------------------------------------------------------------------------------
def test_crc_is_ccitt_false_and_both_sides_frame_alike() -> None:
    assert frames.crc16(b"123456789") == board_framing.crc16(b"123456789") == 0x29B1
    line = frames.encode(0x2A, "MODE NETWORK")
    assert (
        line == b"002A MODE NETWORK*" + f"{frames.crc16(b'002A MODE NETWORK'):04X}".encode() + b"\n"
    )
    assert board_framing.unframe(line[:-1]) == (0x2A, "MODE NETWORK")
    assert frames.decode(board_framing.frame(7, "OK *IDN? has a star")) == (
        7,
        "OK *IDN? has a star",
    )
    assert frames.next_seq(0xFFFF) == 1 and frames.next_seq(1) == 2  # 0 is the board's own
    with pytest.raises(frames.FrameError, match="checksum mismatch"):
        frames.decode(line.replace(b"NETWORK", b"NETWORX"))
    with pytest.raises(frames.FrameError, match="not a version-2 frame"):
        frames.decode(b"OK MODE NETWORK\n")


def test_a_corrupted_line_is_refused_and_nothing_runs(server: BoardServer, raw: RawHost) -> None:
    raw.v2()
    assert raw.ask("MODE NETWORK") == (1, "OK MODE NETWORK")
    good = frames.encode(2, "DAC:SET 0:0.5")
    bad = good.replace(b"0.5", b"0.9")  # one digit changed on the wire, CRC left as it was
    raw.port.write(bad)
    seq, text = frames.decode(raw.port.read_until(b"\n"))
    assert seq == 2 and text.startswith("ERR 120 checksum mismatch")
    assert raw.ask("DAC?")[1].startswith("OK 0,0,")  # not applied
    # an unframed line in a version-2 session: refused, answered under sequence number 0
    seq, text = frames.decode(raw.line(b"DAC:SET 0:0.5"))
    assert (seq, text) == (0, "ERR 120 not a version-2 frame (expected '<seq> <command>*<crc>')")
    assert server.frames_refused == 2


def test_the_driver_resends_a_command_the_board_refused_as_corrupted(
    server: BoardServer, board: SerialBoard
) -> None:
    board.mode("network")
    sent = board.commands_sent
    server.corrupt_next_command()
    board.set_dacs({0: 0.5})  # refused once (ERR 120: nothing ran), sent again, applied
    assert board.frame_retries == 1 and board.commands_sent - sent == 2
    assert server.frames_refused == 1
    np.testing.assert_allclose(board.read_dacs()[0], 0.5)


def test_a_corrupted_reply_is_an_error_and_leaves_pulses_uncertain(
    server: BoardServer, board: SerialBoard
) -> None:
    server.corrupt_next_reply()
    with pytest.raises(InstrumentError, match="corrupted reply .*checksum mismatch|not a version"):
        board.read_mode()
    board.mode("programming")
    server.corrupt_next_reply()
    with pytest.raises(PulseError) as err:
        board.pulse_many([(0, 0, 1.2, 3)], width=1e-7)
    assert err.value.tally.uncertain == 1  # it ran, but the board's word for it was lost
    assert server.backend.conductance[0, 0] == pytest.approx(G0 + 3 * STEP)


# -- late replies ----------------------------------------------------------------------------
def test_a_late_reply_is_recognised_and_discarded(server: BoardServer) -> None:
    with SerialBoard(server.port, name="xbar", timeout=0.2) as drv:
        drv.mode("network")
        drv.set_dacs({0: 0.25})
        server.delay_next(0.3, "DAC?")  # answered after the host gave up on it
        with pytest.raises(InstrumentError, match="no reply within 0.2 s"):
            drv.read_dacs()
        # the late DAC? reply arrives while the host waits for MODE?'s: not taken for it
        assert drv.read_mode() == "network"
        assert drv.stale_replies == 1


def test_version_1_cannot_tell_a_late_reply_from_its_own() -> None:
    """Why version 2 numbers its lines: the same timing fools a version-1 host."""
    with BoardServer(spec=V1_SPEC) as srv, SerialBoard(srv.port, name="xbar", timeout=0.2) as drv:
        drv.mode("network")
        srv.delay_next(0.3, "DAC?")
        with pytest.raises(InstrumentError, match="no reply within"):
            drv.read_dacs()
        assert drv.read_mode().startswith("0,0,")  # DAC?'s late reply, taken as MODE?'s


# -- resync on open ----------------------------------------------------------------------------
@pytest.mark.parametrize("spec", [SPEC, V1_SPEC], ids=["v2", "v1"])
def test_a_half_line_left_by_a_dead_host_does_not_break_the_next_open(spec: BoardSpec) -> None:
    with BoardServer(spec=spec) as srv:
        dead = serial.serial_for_url(srv.port, timeout=1.0)
        dead.write(b"DAC:SET 0:0.1,1:")  # killed mid-write: no newline
        dead.flush()
        dead.close()
        time.sleep(0.05)
        with SerialBoard(srv.port, name="xbar") as drv:
            assert drv.identity.model == "XBAR-8x8"
            assert drv.protocol == spec.protocol
            assert drv.read_mode() == "idle"


def test_a_dead_version_2_host_leaves_nothing_the_next_host_trips_on(server: BoardServer) -> None:
    dead = RawHost(server.port).v2()
    dead.ask("MODE PROGRAMMING")
    server.delay_next(0.3, "PULSE:MANY")  # its last command is still being answered ...
    dead.port.write(frames.encode(9, "PULSE:MANY 1e-07 V/3 0:0:1.2:2"))
    dead.port.write(b"0010 READ 0 0 0.")  # ... and it died writing the next one
    dead.port.flush()
    dead.close()
    with SerialBoard(server.port, name="xbar", protocol=1) as drv:  # even a version-1 host
        assert drv.protocol == 1 and server.protocol == 1
        assert drv.read_mode() == "programming"
    with SerialBoard(server.port, name="xbar") as drv:
        assert drv.protocol == 2 and drv.read_mode() == "idle"  # the last one's exit aborted


# -- bulk reads -------------------------------------------------------------------------------
def test_a_bulk_read_equals_the_per_device_reads() -> None:
    spec = BoardSpec(rows=32, cols=16, read_n=100)
    backend = LinearBackend(spec)
    backend.conductance[:] = np.random.default_rng(0).uniform(10e-6, 100e-6, (32, 16))
    with BoardServer(backend, spec) as srv, SerialBoard(srv.port, name="xbar") as drv:
        drv.mode("programming")
        rows, cols = np.divmod(np.arange(32 * 16), 16)
        sent = drv.commands_sent
        single = np.array([drv.read_device(r, c, 0.2) for r, c in zip(rows, cols, strict=True)])
        assert drv.commands_sent - sent == 512
        sent = drv.commands_sent
        bulk = drv.read_devices(rows, cols, 0.2)
        np.testing.assert_array_equal(bulk, single)  # the same numbers, to the bit
        assert drv.commands_sent - sent == 6  # 32 rows of 16 in blocks of at most 100
        block = drv.read_block((3, 5), (2, 9), 0.2)
        np.testing.assert_array_equal(block, single.reshape(32, 16)[3:6, 2:10])
        picks = np.array([5, 77, 3, 300, 77, 511])  # any order, repeats allowed
        np.testing.assert_array_equal(
            drv.read_devices(rows[picks], cols[picks], 0.2), single[picks]
        )


def test_plan_reads_covers_what_was_asked_in_blocks_of_at_most_read_n() -> None:
    rng = np.random.default_rng(1)
    rows, cols = rng.integers(0, 40, 300), rng.integers(0, 70, 300)
    blocks = plan_reads(rows, cols, 64)
    covered = np.zeros((40, 70), dtype=int)
    for (r0, r1), (c0, c1) in blocks:
        assert 0 < (r1 - r0 + 1) * (c1 - c0 + 1) <= 64
        covered[r0 : r1 + 1, c0 : c1 + 1] += 1
    assert (covered[rows, cols] == 1).all()  # every device read, none twice
    # a whole crossbar: full rows stacked into tiles
    r, c = np.divmod(np.arange(130 * 64), 64)
    assert plan_reads(r, c, 1024) == [((16 * k, min(16 * k + 15, 129)), (0, 63)) for k in range(9)]
    assert plan_reads(np.array([0, 0]), np.array([0, 9]), 1024) == [
        ((0, 0), (0, 0)),
        ((0, 0), (9, 9)),
    ]


def test_bulk_reads_need_a_version_2_session_and_fit_read_n() -> None:
    with BoardServer(spec=BoardSpec(read_n=16)) as srv:
        raw = RawHost(srv.port)
        raw.line(b"MODE PROGRAMMING")
        assert raw.line(b"READ:ROW 0 0 7 0.2") == b"ERR 100 unknown command 'READ:ROW'\n"
        raw.v2()
        assert raw.ask("READ:TILE 0 1 0 7 0.2")[1].count(",") == 15
        assert raw.ask("READ:TILE 0 2 0 7 0.2")[1] == (
            "ERR 103 bulk read of devices 24 out of range [1, 16]"
        )
        assert raw.ask("READ:ROW 0 5 2 0.2")[1].startswith("ERR 101 empty block")
        raw.close()


# -- ABORT during a batch ---------------------------------------------------------------------
def test_abort_interrupts_a_long_batch_and_the_count_is_exact(server: BoardServer) -> None:
    server.pace_pulses(0.005)  # 40 entries of 5 pulses: a one-second batch
    entries = [(r, c, 1.2, 5) for r in range(5) for c in range(8)]
    with SerialBoard(server.port, name="xbar", timeout=5.0) as drv:
        drv.mode("programming")
        tally, errors = PulseTally(), []

        def batch() -> None:
            try:
                drv.pulse_many(entries, width=1e-7, tally=tally)
            except PulseError as exc:
                errors.append(exc)

        worker = threading.Thread(target=batch)
        worker.start()
        time.sleep(0.25)
        start = time.monotonic()
        drv.abort()  # from another thread, while the batch runs
        assert time.monotonic() - start < 0.5  # it did not wait for the batch to end
        worker.join(5.0)
        assert drv.read_mode() == "idle"
    (error,) = errors
    assert "ERR 111 completed=" in error.reason and "aborted by ABORT" in error.reason
    delivered = tally.delivered()
    assert 0 < delivered.sum() < 200 and tally.uncertain == 0
    moved = np.rint((server.backend.conductance[:5] - G0) / STEP).astype(int).ravel()
    np.testing.assert_array_equal(moved, delivered)  # what the devices got, to the pulse


def test_a_version_1_board_finishes_the_batch_before_its_abort() -> None:
    with BoardServer(spec=V1_SPEC, pulse_seconds=0.002) as srv:
        with SerialBoard(srv.port, name="xbar", timeout=5.0) as drv:
            drv.mode("programming")
            worker = threading.Thread(
                target=drv.pulse_many, args=([(0, c, 1.2, 20) for c in range(8)], 1e-7)
            )
            worker.start()
            time.sleep(0.05)
            assert not drv.interrupt()  # nothing can be said to it while it works
            drv.abort()  # waits for the batch, then aborts
            worker.join(5.0)
        np.testing.assert_allclose(srv.backend.conductance[0], G0 + 20 * STEP)


# -- the watchdog -----------------------------------------------------------------------------
def test_the_watchdog_trips_to_the_safe_state_when_the_host_dies(server: BoardServer) -> None:
    drv = SerialBoard(server.port, name="xbar", watchdog=0.3).open()
    assert drv.watchdog_armed == 0.3 and server.watchdog_s == 0.3
    drv.mode("network")
    drv.set_dacs(np.full(SPEC.n_dac, 0.5))
    drv.close()  # the host dies: no ABORT, no more lines
    time.sleep(0.6)
    assert server.watchdog_trips == 1
    assert server.mode == "IDLE" and not server.backend.dac.any()
    assert server.backend.mode == "idle"


def test_a_command_after_a_trip_says_why_the_board_is_idle(server: BoardServer, raw: RawHost):
    raw.v2()
    assert raw.ask("WATCHDOG 0.2") == (1, "OK WATCHDOG 0.2")
    assert raw.ask("MODE NETWORK")[1] == "OK MODE NETWORK"
    time.sleep(0.4)
    assert raw.ask("DAC:SET 0:0.1")[1] == (
        "ERR 105 DAC:SET needs mode NETWORK, board is in IDLE (the watchdog tripped after "
        "0.2 s of host silence)"
    )
    assert raw.ask("WATCHDOG?")[1] == "OK 0.2 1"
    assert raw.ask("WATCHDOG 0.01")[1].startswith("ERR 103 watchdog timeout 0.01 s out of range")


def test_an_idle_host_keeps_the_watchdog_fed(server: BoardServer) -> None:
    with SerialBoard(server.port, name="xbar", watchdog=0.3) as drv:
        drv.mode("network")
        drv.set_dacs({0: 0.5})
        sent = drv.commands_sent
        time.sleep(1.2)  # four watchdog periods of computing elsewhere
        np.testing.assert_allclose(drv.read_dacs()[0], 0.5)  # (and no ping is in flight now)
        assert server.watchdog_trips == 0 and server.mode == "NETWORK"
        assert drv.pings_sent >= 4 and server.pings_received == drv.pings_sent
        assert drv.commands_sent == sent + 1  # pings are not counted as commands


def test_a_watchdog_outside_the_boards_range_is_refused_at_open(server: BoardServer) -> None:
    with pytest.raises(InstrumentError, match=r"watchdog 5000 s out of the board's range"):
        SerialBoard(server.port, name="xbar", watchdog=5000).open()


# -- exclusive ports --------------------------------------------------------------------------
def test_a_second_opener_of_the_port_is_refused(server: BoardServer, board: SerialBoard) -> None:
    with pytest.raises(InstrumentError, match="cannot open .*exclusive"):
        SerialBoard(server.port, name="xbar2").open()
    assert board.read_mode() == "idle"  # the first host is undisturbed
    board.close()
    with SerialBoard(server.port, name="xbar2") as second:
        assert second.read_mode() == "idle"


# -- version negotiation ------------------------------------------------------------------------
def test_a_version_1_board_is_spoken_to_in_version_1(caplog: pytest.LogCaptureFixture) -> None:
    with BoardServer(spec=V1_SPEC) as srv:
        with caplog.at_level(logging.WARNING, logger="drivers.serial_board"):
            drv = SerialBoard(srv.port, name="xbar", watchdog=1.0).open()
        try:
            assert drv.protocol == 1 and drv.offered_protocols == (1,)
            assert drv.watchdog_armed is None and "has no watchdog" in caplog.text
            assert drv.capabilities.read_n is None
            drv.mode("programming")
            sent = drv.commands_sent
            np.testing.assert_allclose(drv.read_devices([0, 1, 2], [3, 3, 3], 0.2), 0.2 * G0)
            assert drv.commands_sent - sent == 3  # one READ each
            with pytest.raises(InstrumentError, match="bulk reads need protocol 2"):
                drv.read_block((0, 0), (0, 7), 0.2)
        finally:
            drv.close()
        with pytest.raises(InstrumentError, match=r"speaks protocol version\(s\) 1, not 2"):
            SerialBoard(srv.port, name="xbar", protocol=2).open()


def test_a_version_2_board_speaks_version_1_when_asked(server: BoardServer) -> None:
    with SerialBoard(server.port, name="xbar", protocol=1) as drv:
        assert drv.protocol == 1 and drv.offered_protocols == (1, 2) and server.protocol == 1
        drv.mode("network")
        drv.set_dacs({0: 0.5})
        assert drv.read_adcs([0]).values[0] == pytest.approx(-0.25, abs=1e-4)
    with SerialBoard(server.port, name="xbar") as drv:
        assert drv.protocol == 2 and server.protocol == 2


def test_negotiation_replies_in_the_framing_it_was_asked(raw: RawHost) -> None:
    assert raw.line(b"PROTO?") == b"OK 1,2\n"
    assert (
        raw.line(b"PROTO 3") == b"ERR 103 protocol version 3 not spoken (this board speaks 1, 2)\n"
    )
    raw.v2()
    assert raw.line(b"PROTO?") == b"OK 1,2\n"  # still answered unframed: any host may ask
    assert raw.ask("PING") == (1, "OK PING")
    assert raw.ask("CAP?")[1].endswith(" READ_N=1024 WATCHDOG_S=0.1,3600")
    assert raw.ask("PROTO 1") == (3, "OK PROTO 1")
    assert raw.line(b"MODE?") == b"OK IDLE\n"


# -- a paced link -----------------------------------------------------------------------------
def test_a_paced_link_takes_its_wire_time_and_a_long_reply_is_not_a_timeout() -> None:
    spec = BoardSpec(rows=16, cols=16)
    backend = LinearBackend(spec)
    backend.conductance[:] = np.random.default_rng(2).uniform(10e-6, 100e-6, (16, 16))
    with BoardServer(backend, spec, baudrate=38400) as srv:
        with SerialBoard(srv.port, name="xbar", baudrate=38400, timeout=0.3) as drv:
            drv.mode("programming")
            before = drv.bytes_sent + drv.bytes_received
            start = time.monotonic()
            block = drv.read_block((0, 15), (0, 15), 0.2)  # about 4 kB: 1 s on this wire
            seconds = time.monotonic() - start
            wire = (drv.bytes_sent + drv.bytes_received - before) * 10 / 38400
    assert wire > 0.9 and seconds >= 0.95 * wire  # longer than the timeout, and no timeout
    np.testing.assert_allclose(block, backend.conductance * 0.2, rtol=1e-9)  # 10 digits


# -- hil bench check ----------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", [1, 2])
def test_bench_check_says_which_protocol_the_board_speaks(protocol: int) -> None:
    section = small_lab_bench_section()
    section["emulate"]["boards"]["xbar"]["protocol"] = protocol
    bench = build_check_bench(small_run_config(bench=section))
    try:
        rows = {row.item: row for row in check_bench(bench) if row.instrument == "xbar"}
    finally:
        bench.close()
    assert rows["protocol"].ok and rows["watchdog"].ok
    assert rows["protocol"].expected == "1 or 2 (the newest offered)"
    if protocol == 2:
        assert rows["protocol"].found.startswith("2 (CRC-16, sequence numbers, bulk reads")
        assert rows["watchdog"].found == "armed at 10 s, fed by a ping when idle"
    else:
        assert rows["protocol"].found.startswith("1 (no checksum")
        assert rows["watchdog"].found == "none: the board speaks protocol 1"
