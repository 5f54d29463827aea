"""Lab bench configs (pydantic): the instruments, how the network is wired to their channels,
and, for the emulated lab, what to emulate.

A lab bench realises a network on instruments: a crossbar board (``serial_board``: DACs,
ADCs and the crossbar's row and column lines) and source-measure units (SMUs). The ``wiring``
section maps every network node and every crossbar tile to instrument channels::

    inputs   one channel per input source, in node order (+x0 .. +xN, -x0 .. -xN): a board
             DAC channel or an SMU channel sourcing voltage
    bias     one channel per bias source, tile by tile (empty: external supplies)
    hidden   one board ADC channel per hidden node, layer by layer
    outputs  one SMU channel per output node (+0, -0, +1, -1, ...), sourcing the nudge current
             (0 A in the free phase) and measuring the node voltage
    tiles    where each crossbar tile lies on a board's lines (its first row and column)

A channel is written ``INSTRUMENT:CHANNEL`` (``xbar:3``, ``smu1:smua``); a run of board
channels is ``xbar:0-127``. Every check that does not need the network runs when the config
is loaded; :meth:`LabBenchConfig.resolve` checks the counts against a network.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from hil.bench import PulseCalibration, SafetyLimits
from hil.config.simulated import SimulatedBenchConfig
from hil.errors import ConfigError
from hil.network import Network
from hil.schema import MAX_CHANNELS, MAX_COUNT, Schema
from hil.vocabulary import (
    DEFAULT_BOARD_MODEL,
    SMU_DRIVERS,
    DriverName,
    FlaggedSamples,
    PulseScheme,
)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_REF = re.compile(r"(?P<inst>[A-Za-z_][A-Za-z0-9_-]*):(?P<chan>[A-Za-z0-9_]+)(?:-(?P<last>\d+))?")


@dataclass(frozen=True, order=True)
class ChannelRef:
    """One instrument channel: ``instrument:channel``.

    Attributes
    ----------
    instrument : str
        Name of the instrument in ``bench.instruments``.
    channel : str
        Channel name (``smua``, ``1``) or board channel / line index (``"17"``).
    """

    instrument: str
    channel: str

    def __str__(self) -> str:
        return f"{self.instrument}:{self.channel}"

    @property
    def index(self) -> int:
        """The channel as an integer (board channels)."""
        return int(self.channel)


def expand_refs(items: Sequence[str]) -> list[ChannelRef]:
    """Parse ``INSTRUMENT:CHANNEL`` and ``INSTRUMENT:FIRST-LAST`` items into channels.

    Raises
    ------
    ValueError
        Naming the item and the expected form.
    """
    refs: list[ChannelRef] = []
    for item in items:
        m = _REF.fullmatch(str(item).strip())
        if m is None:
            raise ValueError(
                f"{item!r} is not INSTRUMENT:CHANNEL or INSTRUMENT:FIRST-LAST (e.g. xbar:0-127)"
            )
        inst, chan, last = m.group("inst"), m.group("chan"), m.group("last")
        if last is None:
            refs.append(ChannelRef(inst, chan))
            continue
        if not chan.isdigit() or int(last) < int(chan):
            raise ValueError(f"{item!r}: a range must be FIRST-LAST with FIRST <= LAST")
        if int(last) - int(chan) + 1 + len(refs) > MAX_CHANNELS:
            raise ValueError(f"{item!r}: more than {MAX_CHANNELS} channels in one group")
        refs.extend(ChannelRef(inst, str(c)) for c in range(int(chan), int(last) + 1))
    return refs


class InstrumentConfig(Schema):
    """One instrument of a lab bench.

    Attributes
    ----------
    driver : ``"serial_board"``, ``"keithley2400"``, ``"keithley2450"``, ``"keithley2600"`` or
        ``"keysight_b2900"``
    address : str or None
        Where it is: a pyserial URL or device (``/dev/ttyUSB0``) for a board, a VISA resource
        (``TCPIP::192.168.1.21::5025::SOCKET``, ``GPIB0::24::INSTR``) for an SMU. None only in
        an emulated lab, which fills it in.
    model : str or None
        The model the instrument must identify as: the board model (default ``XBAR-8x8``) or,
        for an SMU, a model of the driver's family (``2636B``); None accepts any the driver
        supports.
    timeout_s : float
        Longest wait for one reply (s).
    baudrate : int
        Line speed of a board (baud).
    protocol : int or None
        Board protocol version to speak (``docs/serial-board-protocol.md``): None the newest
        the board offers, 2 refuses a board that cannot (no checksums, no watchdog), 1
        speaks version 1 even to a board that offers 2.
    watchdog_s : float or None
        A board (protocol 2) goes to its safe state after this long without a line from the
        host; the driver pings it when idle, so only a dead host trips it. None: off.
    pulse_allowance_s : float
        Time one pulse may take on a board beyond its width (s): a ``PULSE:MANY`` line's
        reply is awaited for ``timeout_s`` plus its pulses times ``width + pulse_allowance_s``.
    """

    driver: DriverName
    address: str | None = Field(None, max_length=256)
    model: str | None = Field(None, max_length=64)
    timeout_s: float = Field(2.0, gt=0, le=600)
    baudrate: int = Field(115200, gt=0, le=10_000_000)
    protocol: int | None = Field(None, ge=1, le=2)
    watchdog_s: float | None = Field(10.0, gt=0, le=3600)
    pulse_allowance_s: float = Field(1e-4, ge=0, le=1.0)

    @property
    def kind(self) -> Literal["board", "smu"]:
        """``"board"`` or ``"smu"``."""
        return "smu" if self.driver in SMU_DRIVERS else "board"

    @property
    def board_model(self) -> str:
        """The board model expected at connect."""
        return self.model or DEFAULT_BOARD_MODEL


class TileLines(Schema):
    """Where a crossbar tile lies on a board: row ``r`` of the tile is line ``row + r``.

    Attributes
    ----------
    board : str
        The board instrument carrying the tile.
    row, col : int
        First row line and first column line of the tile.
    """

    board: str
    row: int = Field(0, ge=0, le=MAX_CHANNELS)
    col: int = Field(0, ge=0, le=MAX_CHANNELS)


class WiringConfig(Schema):
    """Which instrument channel every node and tile is wired to (module docstring)."""

    inputs: list[str] = Field(max_length=MAX_CHANNELS)
    bias: list[str] = Field(default_factory=list, max_length=MAX_CHANNELS)
    hidden: list[str] = Field(default_factory=list, max_length=MAX_CHANNELS)
    outputs: list[str] = Field(max_length=MAX_CHANNELS)
    tiles: list[TileLines] | None = Field(None, max_length=1024)

    @field_validator("inputs", "bias", "hidden", "outputs")
    @classmethod
    def _refs(cls, items: list[str]) -> list[str]:
        expand_refs(items)
        return items

    def refs(self, group: Literal["inputs", "bias", "hidden", "outputs"]) -> list[ChannelRef]:
        """The channels of one group, ranges expanded."""
        return expand_refs(getattr(self, group))


class PulseCalibrationConfig(Schema):
    """Nominal response of the devices to the programming pulse.

    Give ``n_states`` (pulses over ``[g_min, g_max]``, symmetric) or both steps.

    Attributes
    ----------
    amplitude_v, width_s : float
        The programming pulse (V, s).
    n_states : int or None
    step_up, step_down : float or None
        Mean conductance change per potentiating / depressing pulse (S).
    """

    amplitude_v: float = Field(1.0, gt=0, le=1e3)
    width_s: float = Field(1e-6, gt=0, le=1e3)
    n_states: int | None = Field(None, gt=0, le=MAX_COUNT)
    step_up: float | None = Field(None, gt=0, le=1.0)
    step_down: float | None = Field(None, gt=0, le=1.0)

    @model_validator(mode="after")
    def _one_way(self) -> PulseCalibrationConfig:
        steps = (self.step_up is not None, self.step_down is not None)
        if self.n_states is None and not all(steps):
            raise ValueError("give n_states or both step_up and step_down")
        if self.n_states is not None and any(steps):
            raise ValueError("give n_states or step_up/step_down, not both")
        return self

    def calibration(self, g_bounds: tuple[float, float]) -> PulseCalibration:
        """The :class:`~hil.bench.PulseCalibration` for a network's ``(g_min, g_max)`` (S)."""
        if self.n_states is not None:
            step = (g_bounds[1] - g_bounds[0]) / self.n_states
            return PulseCalibration(step, step, self.amplitude_v, self.width_s)
        assert self.step_up is not None and self.step_down is not None
        return PulseCalibration(self.step_up, self.step_down, self.amplitude_v, self.width_s)


class EmulatedBoardConfig(Schema):
    """What an emulated board reports (``CAP?``); None fields are derived from the wiring
    (channel counts, lines) and the limits (DAC range), or take the emulator's defaults.

    ``protocol`` is the newest protocol version the emulated firmware speaks (1: a board
    from before version 2), ``firmware`` defaults to ``"<protocol>.0.0"``; ``read_n`` is
    the most devices one bulk read returns; ``baudrate`` paces the emulated link as a UART
    at that speed would (10 bits a byte), None: as fast as the pty.
    """

    serial: str = "EMU0001"
    firmware: str | None = Field(None, max_length=64)
    protocol: int = Field(2, ge=1, le=2)
    read_n: int | None = Field(None, gt=0, le=MAX_CHANNELS)
    baudrate: float | None = Field(None, gt=0, le=10_000_000)
    n_dac: int | None = Field(None, gt=0, le=MAX_CHANNELS)
    dac_range: tuple[float, float] | None = None
    n_adc: int | None = Field(None, gt=0, le=MAX_CHANNELS)
    adc_range: tuple[float, float] | None = None
    adc_bits: int | None = Field(None, ge=2, le=32)
    rows: int | None = Field(None, gt=0, le=MAX_CHANNELS)
    cols: int | None = Field(None, gt=0, le=MAX_CHANNELS)
    pulse_amplitude: tuple[float, float] | None = None
    pulse_width: tuple[float, float] | None = None
    pulse_count: tuple[int, int] | None = None
    read_voltage: tuple[float, float] | None = None
    max_line: int | None = Field(None, gt=0, le=10_000_000)


class EmulateConfig(Schema):
    """Start emulators for every instrument, all attached to one simulated crossbar.

    Attributes
    ----------
    physics : SimulatedBenchConfig
        The simulated bench behind the emulators (engine, device model, ...), as in a
        ``kind: simulated`` bench section; seeded with ``training.seed`` (or its own
        ``seed``). Its limits default to wide ones: the instruments are the guard here.
    boards : dict of EmulatedBoardConfig
        Per board instrument, what the emulated board reports.
    """

    physics: SimulatedBenchConfig = Field(default_factory=SimulatedBenchConfig)
    boards: dict[str, EmulatedBoardConfig] = Field(default_factory=dict)

    @field_validator("physics", mode="before")
    @classmethod
    def _physics_is_simulated(cls, value: Any) -> Any:
        if isinstance(value, dict) and "kind" not in value:
            return {"kind": "simulated", **value}  # `kind` may be left out, as in a bench
        return value


class LabBenchConfig(Schema):
    """A bench of instruments (``kind: lab``); see ``bench_configs/lab-example.yaml``.

    Attributes
    ----------
    instruments : dict of InstrumentConfig
        By name; the names are used in the wiring and in every error message.
    wiring : WiringConfig
    settle_delay_s : float
        Wait between applying a sample's sources and measuring (s).
    averaging : int
        Readings averaged per measured node (sent within the same bulk command).
    read_voltage : float
        Bias of a device read (V); ``G = I / read_voltage``.
    pulse_scheme : ``"V/2"`` or ``"V/3"``
        How the board biases the unselected lines while pulsing.
    calibration : PulseCalibrationConfig or None
        Nominal device response for open-loop programming; in an emulated lab it defaults
        to the physics' calibration.
    limits : SafetyLimits
        Checked before anything is applied; the SMU compliances come from here.
    flagged_samples : ``"raise"`` or ``"record"``
        A sample with a channel in compliance or an ADC overflow raises an InstrumentError
        after the exchange in progress (default), or is recorded in the Measurement's
        ``compliance`` / ``overflow`` arrays and training carries on.
    emulate : EmulateConfig or None
        Present: start emulators for every instrument (``address`` is filled in).
    """

    kind: Literal["lab"] = "lab"
    instruments: dict[str, InstrumentConfig] = Field(max_length=256)
    wiring: WiringConfig
    settle_delay_s: float = Field(0.0, ge=0, le=60)
    averaging: int = Field(1, ge=1, le=10_000)
    read_voltage: float = Field(0.2, gt=0, le=10)
    pulse_scheme: PulseScheme = "V/2"
    calibration: PulseCalibrationConfig | None = None
    limits: SafetyLimits = Field(default_factory=SafetyLimits)
    flagged_samples: FlaggedSamples = "raise"
    emulate: EmulateConfig | None = None

    @model_validator(mode="after")
    def _consistent(self) -> LabBenchConfig:
        if not self.instruments:
            raise ValueError("instruments: at least one instrument is needed")
        for name, inst in self.instruments.items():
            if not _NAME.fullmatch(name):
                raise ValueError(
                    f"instrument name {name!r} must start with a letter and hold only letters, "
                    "digits, '_' and '-'"
                )
            if inst.address is None and self.emulate is None:
                raise ValueError(f"instruments.{name}.address is required (no emulate section)")
        owners: dict[str, str] = {}
        for name, inst in self.instruments.items():
            if inst.address is not None and inst.address in owners:
                raise ValueError(
                    f"instruments.{name}.address {inst.address!r} is already the address of "
                    f"instruments.{owners[inst.address]}: one instrument, one address"
                )
            if inst.address is not None:
                owners[inst.address] = name
        wiring = self.wiring
        allowed = {
            "inputs": ("board", "smu"),
            "bias": ("board", "smu"),
            "hidden": ("board",),
            "outputs": ("smu",),
        }
        seen: dict[tuple[str, ChannelRef], str] = {}
        for group, kinds in allowed.items():
            for ref in wiring.refs(group):  # type: ignore[arg-type]
                found = self.instruments.get(ref.instrument)
                if found is None:
                    raise ValueError(
                        f"wiring.{group}: {ref} names no instrument (known: "
                        f"{', '.join(self.instruments)})"
                    )
                inst = found
                if inst.kind not in kinds:
                    what = " or ".join(f"a {k}" for k in kinds)
                    raise ValueError(
                        f"wiring.{group}: {ref} is on a {inst.kind} ({inst.driver}); "
                        f"{group} must be on {what}"
                    )
                if inst.kind == "board" and not ref.channel.isdigit():
                    raise ValueError(f"wiring.{group}: board channel {ref} must be a number")
                space = "adc" if group == "hidden" else ("dac" if inst.kind == "board" else "smu")
                key = (space, ref)
                if key in seen:
                    raise ValueError(
                        f"wiring.{group}: {ref} is already wired to wiring.{seen[key]}"
                    )
                seen[key] = group
        for tile in wiring.tiles or []:
            board = self.instruments.get(tile.board)
            if board is None or board.kind != "board":
                raise ValueError(f"wiring.tiles: {tile.board!r} is not a board instrument")
        if wiring.tiles is None and len(self.boards) != 1:
            raise ValueError("wiring.tiles is required unless the bench has exactly one board")
        if self.emulate is None and self.calibration is None:
            raise ValueError("calibration is required for a physical bench")
        if self.emulate is not None:
            for name in self.emulate.boards:
                if name not in self.boards:
                    raise ValueError(f"emulate.boards: {name!r} is not a board instrument")
        return self

    @property
    def boards(self) -> list[str]:
        """Names of the board instruments, in config order."""
        return [n for n, i in self.instruments.items() if i.kind == "board"]

    @property
    def smus(self) -> list[str]:
        """Names of the SMU instruments, in config order."""
        return [n for n, i in self.instruments.items() if i.kind == "smu"]

    def resolve(self, network: Network) -> Wiring:
        """The wiring of ``network``'s nodes and devices; ConfigError on any mismatch."""
        w = self.wiring
        n_bias = sum(len(b) for b in network.bias_nodes)
        inputs, bias = w.refs("inputs"), w.refs("bias")
        hidden, outputs = w.refs("hidden"), w.refs("outputs")
        counts = [
            ("inputs", len(inputs), network.n_input_sources, "input sources (+x then -x)"),
            ("hidden", len(hidden), len(network.hidden_nodes), "hidden nodes"),
            ("outputs", len(outputs), network.n_output_nodes, "output nodes (2 per class)"),
        ]
        if bias:
            counts.append(("bias", len(bias), n_bias, "bias sources (all tiles)"))
        for group, got, want, what in counts:
            if got != want:
                raise ConfigError(
                    f"bench.wiring.{group} maps {got} channels but the network has {want} {what}"
                )
        external: list[ChannelRef | None] = [None] * n_bias  # bias from external supplies
        sources: list[ChannelRef | None] = [*inputs, *(bias or external)]
        if w.tiles is None:
            board, row, col, tiles = self.boards[0], 0, 0, []
            for tile in network.tiles:
                tiles.append(TileLines(board=board, row=row, col=col))
                row, col = row + tile.shape[0], col + tile.shape[1]
        else:
            tiles = list(w.tiles)
            if len(tiles) != len(network.tiles):
                raise ConfigError(
                    f"bench.wiring.tiles places {len(tiles)} tiles but the network has "
                    f"{len(network.tiles)}"
                )
        wiring = Wiring(tuple(sources), tuple(hidden), tuple(outputs), tuple(tiles), network)
        wiring.check_overlaps()
        return wiring


@dataclass(frozen=True)
class Wiring:
    """A lab config's wiring resolved against one network.

    Attributes
    ----------
    sources : tuple of ChannelRef or None, length n_sources
        Channel of every source node (inputs, then bias); None for an external supply.
    hidden : tuple of ChannelRef, length n_hidden
        ADC channel of every hidden node (``network.hidden_nodes`` order).
    outputs : tuple of ChannelRef, length n_output_nodes
        SMU channel of every output node.
    tiles : tuple of TileLines, length n_tiles
    network : Network
    """

    sources: tuple[ChannelRef | None, ...]
    hidden: tuple[ChannelRef, ...]
    outputs: tuple[ChannelRef, ...]
    tiles: tuple[TileLines, ...]
    network: Network

    @cached_property
    def device_lines(self) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        """Board, row line and column line of every device: (boards (n_devices,), rows, cols)."""
        boards: list[str] = []
        rows, cols = [], []
        for tile, lines in zip(self.network.tiles, self.tiles, strict=True):
            r, c = np.divmod(np.arange(tile.size), tile.shape[1])
            boards.extend([lines.board] * tile.size)
            rows.append(lines.row + r)
            cols.append(lines.col + c)
        return tuple(boards), np.concatenate(rows), np.concatenate(cols)

    def line_extent(self, board: str) -> tuple[int, int]:
        """Rows and columns a board needs for its tiles (0, 0 when it carries none)."""
        rows = cols = 0
        for tile, lines in zip(self.network.tiles, self.tiles, strict=True):
            if lines.board == board:
                rows = max(rows, lines.row + tile.shape[0])
                cols = max(cols, lines.col + tile.shape[1])
        return rows, cols

    def check_overlaps(self) -> None:
        """Raise ConfigError if two tiles share a crosspoint of a board."""
        placed: list[tuple[str, int, int, int, int, int]] = []
        for tile, lines in zip(self.network.tiles, self.tiles, strict=True):
            r0, c0 = lines.row, lines.col
            r1, c1 = r0 + tile.shape[0], c0 + tile.shape[1]
            for board, t, a0, a1, b0, b1 in placed:
                if board == lines.board and r0 < a1 and a0 < r1 and c0 < b1 and b0 < c1:
                    raise ConfigError(
                        f"bench.wiring.tiles: tile {tile.index} (rows {r0}-{r1 - 1}, cols "
                        f"{c0}-{c1 - 1}) overlaps tile {t} on board {board!r}"
                    )
            placed.append((lines.board, tile.index, r0, r1, c0, c1))

    def device_at(self, board: str) -> dict[tuple[int, int], int]:
        """Crosspoint ``(row, col)`` -> device id, for the devices on ``board``."""
        boards, rows, cols = self.device_lines
        return {
            (int(r), int(c)): d
            for d, (b, r, c) in enumerate(zip(boards, rows, cols, strict=True))
            if b == board
        }
