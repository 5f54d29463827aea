"""``hil bench check``: every instrument of a lab bench compared with what its config asks.

:func:`check_bench` identifies every instrument, compares its capabilities with the config
(channel counts, ranges, compliance, pulse shapes), says which protocol version each board
speaks and whether its watchdog is armed, reads a few devices of every tile and
returns the lab to its safe state, one :class:`CheckRow` per check; it reports a mismatch
instead of raising. The comparisons are :mod:`drivers.lab_requirements`'s, which
:meth:`LabBench.connect <drivers.lab_bench.LabBench.connect>` runs too, raising on the first
mismatch.
"""

from __future__ import annotations

from dataclasses import astuple

import numpy as np

from hil.config.lab import InstrumentConfig
from hil.errors import InstrumentError

from .lab_bench import LabBench
from .lab_requirements import CheckRow, smu_model_matches
from .smu import Smu

__all__ = ["CheckRow", "check_bench"]


def check_bench(bench: LabBench, reads_per_tile: int = 2) -> list[CheckRow]:
    """Check a lab bench against its config, one row per check.

    Opens every instrument the bench has not opened yet and identifies it, compares each
    open instrument with the config, goes to the safe state (from whatever state the
    instruments were left in), reads ``reads_per_tile`` devices of each tile (the first and
    the last for 2) if every board passed, and goes to the safe state again. Nothing is
    armed: the SMU outputs stay off.

    Parameters
    ----------
    bench : LabBench
        Usually unconnected (:func:`hil.composition.build_check_bench`); close it after.
    reads_per_tile : int
        Devices read per tile, spread evenly over it.

    Returns
    -------
    list of CheckRow
        Identity rows, capability rows, each board's protocol and watchdog, device reads,
        and last the safe state.

    Raises
    ------
    ConfigError
        The wiring does not fit the network (a config error is not a check row).
    """
    bench.wiring  # noqa: B018 - resolve before touching anything
    with bench.lock:
        failures = bench.open_instruments(strict=False)
        rows = [_identity_row(bench, name, failures.get(name)) for name in bench.config.instruments]
        rows += bench.capability_rows()
        rows += [row for name in bench.boards for row in _link_rows(bench, name)]
        bench.safe_state()
        boards = bench.config.boards
        if all(b in bench.boards for b in boards) and not any(
            r.ok is False for r in rows if r.instrument in boards
        ):
            rows += _device_read_rows(bench, reads_per_tile)
        else:
            rows.append(
                CheckRow("-", "device reads", "board checks pass", "a board check failed", None)
            )
        report = bench.safe_state()
    unsafe = ", ".join(report.unconfirmed)
    rows.append(
        CheckRow(
            "bench",
            "safe state",
            "outputs off, DACs 0 V, boards idle",
            f"not confirmed: {unsafe}" if unsafe else "reached",
            report.confirmed,
        )
    )
    return rows


def _identity_row(bench: LabBench, name: str, failure: InstrumentError | None) -> CheckRow:
    """Who answered at ``name``'s address, against the model the config expects."""
    inst = bench.config.instruments[name]
    expected = _expected_model(inst)
    if failure is not None:
        return CheckRow(name, "identity", expected, failure.reason, False)
    device = bench.instruments[name]
    if isinstance(device, Smu):
        return CheckRow(
            name, "identity", expected, str(device.idn), smu_model_matches(inst, device)
        )
    # a board of another model does not open (SerialBoard checks it against its models)
    return CheckRow(name, "identity", expected, ",".join(astuple(device.identity)), True)


def _link_rows(bench: LabBench, name: str) -> list[CheckRow]:
    """The protocol version board ``name`` speaks and its watchdog, against the config.

    A board from before version 2 is no mismatch unless the config asks for version 2
    (it does not open then); its rows say what it lacks.
    """
    inst = bench.config.instruments[name]
    board = bench.boards[name]
    want = "1 or 2 (the newest offered)" if inst.protocol is None else str(inst.protocol)
    offered = ",".join(map(str, board.offered_protocols))
    if board.protocol >= 2:
        found = f"{board.protocol} (CRC-16, sequence numbers, bulk reads; offered {offered})"
    else:
        found = f"1 (no checksum, no sequence numbers, no watchdog; offered {offered})"
    rows = [CheckRow(name, "protocol", want, found, True)]
    if inst.watchdog_s is None:
        rows.append(CheckRow(name, "watchdog", "off", "off (not armed)", True))
    elif board.watchdog_armed is not None:
        found = f"armed at {board.watchdog_armed:g} s, fed by a ping when idle"
        rows.append(CheckRow(name, "watchdog", f"{inst.watchdog_s:g} s", found, True))
    else:
        found = f"none: the board speaks protocol {board.protocol}"
        rows.append(CheckRow(name, "watchdog", f"{inst.watchdog_s:g} s", found, True))
    return rows


def _expected_model(inst: InstrumentConfig) -> str:
    return inst.board_model if inst.kind == "board" else (inst.model or inst.driver)


def _device_read_rows(bench: LabBench, per_tile: int) -> list[CheckRow]:
    """Read ``per_tile`` devices of every tile in programming mode; G must be within a
    factor of 2 of the network's conductance bounds. A failed read ends the reads."""
    rows = []
    net, v_read = bench.network, bench.config.read_voltage
    lo, hi = net.g_bounds
    boards, line_rows, line_cols = bench.wiring.device_lines
    ids: list[int] = []
    for tile in net.tiles:
        picks = np.linspace(tile.first_device, tile.first_device + tile.size - 1, per_tile)
        ids.extend(sorted({int(round(p)) for p in picks}))
    try:
        for board in bench.boards.values():
            board.mode("programming")
        for d in ids:
            board = bench.boards[boards[d]]
            tile_index, r, c = net.device_address(d)
            g = board.read_device(int(line_rows[d]), int(line_cols[d]), v_read) / v_read
            rows.append(
                CheckRow(
                    boards[d],
                    f"device {d} (tile {tile_index} r{r} c{c}, lines "
                    f"{line_rows[d]},{line_cols[d]})",
                    f"G in [{0.5 * lo:.3g}, {2 * hi:.3g}] S",
                    f"{g:.4g} S",
                    0.5 * lo <= g <= 2 * hi,
                )
            )
    except InstrumentError as exc:
        rows.append(CheckRow(exc.instrument, "device reads", "replies", exc.reason, False))
    return rows
