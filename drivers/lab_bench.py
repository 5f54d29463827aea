"""LabBench: the Bench protocol on instruments, a crossbar board and source-measure units.

A :class:`LabBench` is assembled from a :class:`~hil.lab_config.LabBenchConfig`: it opens
every instrument, checks that each is the model the config expects and can do what the
wiring asks of it (channel counts, ranges, compliance), and maps the network onto them:

- input and bias sources on board DAC channels (or SMU channels sourcing voltage);
- each output node on an SMU channel sourcing the nudge current (0 A in the free phase) and
  measuring the node voltage;
- hidden nodes on board ADC channels;
- devices on the board's ``(row, col)`` lines, tile by tile, for pulses and reads.

A settle loops over the batch. One sample costs a fixed number of commands, whatever the
number of input and hidden channels: one ``DAC:SET`` and one ``ADC:READ`` per board, and per
2600-series SMU one line that sets every channel's level (and reads the error count back,
which also confirms the levels were applied before anything is measured) and one line that
measures every channel and its compliance. Averaging repeats the channels inside the same
lines. SCPI SMUs (2400, B2900) take one command per channel and quantity.

Faults: a timeout, a lost connection, an error reply or queued error, a reading in
compliance or an ADC overflow raises :class:`~hil.errors.InstrumentError` naming the
instrument, the command and the reason, as soon as the exchange in progress has finished;
the caller (the trainer runs inside :func:`hil.bench.in_safe_hands`) then calls
:meth:`LabBench.safe_state`, which sets every SMU to 0 V with its output off and aborts every
board (DACs at 0 V, idle), reconnecting once to an instrument that does not answer, and
lists in :attr:`LabBench.unconfirmed_safe` any it could not confirm.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import astuple, dataclass
from typing import Any, Self

import numpy as np

from hil.bench import (
    Measurement,
    PulseCalibration,
    PulseReport,
    PulseRequest,
)
from hil.errors import ConfigError, InstrumentError, SafetyError
from hil.lab_config import InstrumentConfig, LabBenchConfig, Wiring
from hil.network import Network

from .keithley2400 import Keithley2400
from .keithley2600 import Keithley2600
from .keysight_b2900 import KeysightB2900
from .lab_ports import (
    BoardPort,
    SmuPort,
    TspPort,
    covers,
    fmt_range,
    overlapped,
)
from .serial_board import SerialBoard
from .smu import Smu

log = logging.getLogger(__name__)

#: SMU driver name in a config -> driver class.
SMU_DRIVERS: dict[str, type[Smu]] = {
    "keithley2400": Keithley2400,
    "keithley2600": Keithley2600,
    "keysight_b2900": KeysightB2900,
}


@dataclass(frozen=True)
class CheckRow:
    """One line of ``hil bench check``.

    Attributes
    ----------
    instrument : str
    item : str
        What was checked.
    expected, found : str
        What the config needs and what the instrument has.
    ok : bool or None
        None when the check could not run (an earlier one failed).
    """

    instrument: str
    item: str
    expected: str
    found: str
    ok: bool | None

    @property
    def status(self) -> str:
        return {True: "ok", False: "MISMATCH", None: "skipped"}[self.ok]


class LabBench:
    """A :class:`hil.bench.Bench` on physical (or emulated) instruments.

    Parameters
    ----------
    network : Network
    config : LabBenchConfig
    addresses : mapping of str, optional
        Instrument name -> address, overriding the config's (an emulated lab's addresses).
    calibration : PulseCalibration, optional
        Overrides ``config.calibration`` (an emulated lab passes its physics' calibration).
    on_close : callable, optional
        Called last by :meth:`close` (e.g. to stop the emulators).
    emulator : object, optional
        The emulated lab behind the addresses, if any (kept for inspection, never used).
    resource_manager : pyvisa.ResourceManager, optional
        Used to open the SMUs; default a pyvisa-py manager owned by the bench.

    Attributes
    ----------
    limits : SafetyLimits
    calibration : PulseCalibration
    pulse_counts : ndarray of int, shape (n_devices,)
        Pulses delivered to every device by this bench.
    samples_settled : int
        Samples settled so far (one per row of every ``settle``).
    unconfirmed_safe : tuple of str
        Instruments whose safe state the last :meth:`safe_state` could not confirm.

    Notes
    -----
    The constructor only stores its arguments; :meth:`connect` (or the first operation, or
    ``with``) opens and checks the instruments, arms the SMUs (compliance set, output on at
    0 A) and puts the boards in network mode.
    """

    def __init__(
        self,
        network: Network,
        config: LabBenchConfig,
        *,
        addresses: Mapping[str, str] | None = None,
        calibration: PulseCalibration | None = None,
        on_close: Callable[[], None] | None = None,
        emulator: Any = None,
        resource_manager: object | None = None,
    ) -> None:
        self.network = network
        self.config = config
        self.addresses = dict(addresses or {})
        self.limits = config.limits
        if calibration is None:
            if config.calibration is None:
                raise ConfigError("bench.calibration is required (no emulated physics to ask)")
            calibration = config.calibration.calibration(network.g_bounds)
        self.calibration = calibration
        self.on_close = on_close
        self.emulator = emulator
        self.resource_manager = resource_manager
        self.pulse_counts = np.zeros(network.n_devices, dtype=np.int64)
        self.samples_settled = 0
        self.unconfirmed_safe: tuple[str, ...] = ()
        self._lock = threading.RLock()
        self._wiring: Wiring | None = None
        self._boards: dict[str, SerialBoard] = {}
        self._smus: dict[str, Smu] = {}
        self._board_ports: list[BoardPort] = []
        self._smu_ports: list[SmuPort] = []
        self._own_manager: object | None = None
        self._connected = False
        self._armed = False
        self._live = False  # some SMU level is not 0
        self._safe = True  # nothing applied since the last safe_state
        self._closed = False

    # --- instruments ---------------------------------------------------------------------
    @property
    def instruments(self) -> dict[str, SerialBoard | Smu]:
        """The open instruments by name."""
        return {**self._boards, **self._smus}

    @property
    def commands_sent(self) -> int:
        """Commands written to every instrument so far (the drivers' counters)."""
        return sum(i.commands_sent for i in self.instruments.values())

    @property
    def wiring(self) -> Wiring:
        """The config's wiring resolved against the network (ConfigError on a mismatch)."""
        if self._wiring is None:
            self._wiring = self.config.resolve(self.network)
        return self._wiring

    def _address(self, name: str, inst: InstrumentConfig) -> str:
        address = self.addresses.get(name) or inst.address
        if address is None:
            raise ConfigError(f"bench.instruments.{name}.address is not set")
        return address

    def _open(self, name: str) -> None:
        inst = self.config.instruments[name]
        address = self._address(name, inst)
        if inst.kind == "board":
            board = SerialBoard(
                address,
                name=name,
                baudrate=inst.baudrate,
                timeout=inst.timeout_s,
                models=(inst.board_model,),
            )
            board.open()
            self._boards[name] = board
            return
        if self.resource_manager is None and self._own_manager is None:
            import pyvisa

            self._own_manager = pyvisa.ResourceManager("@py")
        manager = self.resource_manager or self._own_manager
        smu = SMU_DRIVERS[inst.driver](
            address, name=name, resource_manager=manager, timeout=inst.timeout_s
        )
        smu.connect()
        self._smus[name] = smu

    def _open_all(self, strict: bool) -> list[CheckRow]:
        """Open every instrument; rows for ``hil bench check`` (raise on failure if strict)."""
        rows = []
        for name, inst in self.config.instruments.items():
            expected = inst.board_model if inst.kind == "board" else (inst.model or inst.driver)
            if name in self.instruments:
                continue
            try:
                self._open(name)
            except InstrumentError as exc:
                if strict:
                    raise
                rows.append(CheckRow(name, "identity", expected, exc.reason, False))
                continue
            device = self.instruments[name]
            if isinstance(device, Smu):
                idn, ok = str(device.idn), inst.model is None or device.model == inst.model.upper()
                if strict and not ok:
                    raise InstrumentError(
                        name, "*IDN?", f"model {device.model} is not the configured {inst.model}"
                    )
            else:
                idn, ok = ",".join(astuple(device.identity)), True
            rows.append(CheckRow(name, "identity", expected, idn, ok))
        return rows

    def _capability_rows(self) -> list[CheckRow]:
        """Compare every open instrument with what the config asks of it."""
        rows: list[CheckRow] = []
        wiring, limits, net, cal = self.wiring, self.limits, self.network, self.calibration

        def add(name: str, item: str, expected: str, found: str, ok: bool) -> None:
            rows.append(CheckRow(name, item, expected, found, bool(ok)))

        template = net.source_voltages_template
        for name, board in self._boards.items():
            caps = board.capabilities
            dacs = [
                (n, r.index) for n, r in enumerate(wiring.sources) if r and r.instrument == name
            ]
            adcs = [r.index for r in wiring.hidden if r.instrument == name]
            if dacs:
                need = max(c for _, c in dacs) + 1
                add(name, "DAC channels", f">= {need}", str(caps.n_dac), caps.n_dac >= need)
                v = max(
                    limits.max_input_voltage if n < net.n_input_sources else abs(template[n])
                    for n, _ in dacs
                )
                rng = caps.dac_range
                add(name, "DAC range", f"covers +-{v:g} V", fmt_range(rng, "V"), covers(rng, -v, v))
            if adcs:
                need = max(adcs) + 1
                add(name, "ADC channels", f">= {need}", str(caps.n_adc), caps.n_adc >= need)
                lo, hi = net.spec.diode.v_low, net.spec.diode.v_high
                rng = caps.adc_range
                want = f"covers [{lo:g}, {hi:g}] V (diode clamps)"
                add(name, "ADC range", want, fmt_range(rng, "V"), covers(rng, lo, hi))
            n_rows, n_cols = wiring.line_extent(name)
            if not n_rows:
                continue
            found = f"{caps.rows} x {caps.cols}"
            ok = caps.rows >= n_rows and caps.cols >= n_cols
            add(name, "crossbar lines", f">= {n_rows} x {n_cols}", found, ok)
            amp = max(limits.pulse_amplitude[1], cal.amplitude_v)
            rng = caps.pulse_amplitude
            want = f"covers +-{amp:g} V (limits, calibration)"
            add(name, "pulse amplitude", want, fmt_range(rng, "V"), covers(rng, -amp, amp))
            w_lo = min(limits.pulse_width[0], cal.width_s)
            w_hi = max(limits.pulse_width[1], cal.width_s)
            rng = caps.pulse_width
            want = f"covers [{w_lo:g}, {w_hi:g}] s"
            add(name, "pulse width", want, fmt_range(rng, "s"), covers(rng, w_lo, w_hi))
            n = limits.max_pulses_per_request
            found = f"[{caps.pulse_count[0]}, {caps.pulse_count[1]}]"
            add(name, "pulses per command", f">= {n}", found, caps.pulse_count[1] >= n)
            v_read, rng = self.config.read_voltage, caps.read_voltage
            add(
                name,
                "read voltage",
                f"{v_read:g} V",
                fmt_range(rng, "V"),
                covers(rng, v_read, v_read),
            )
        for name, smu in self._smus.items():
            lim = smu.limits
            used = self._smu_channels(name)
            ok = all(ch in smu.channels for ch in used)
            add(name, "channels", ", ".join(used) or "(none)", ", ".join(smu.channels), ok)
            roles = self._smu_roles(name)
            if roles["senses"]:
                v = limits.compliance_voltage
                found = f"[{lim.min_voltage_limit:g}, {lim.max_voltage:g}] V"
                ok = lim.min_voltage_limit <= v <= lim.max_voltage
                add(name, "voltage compliance", f"{v:g} V", found, ok)
                i = limits.max_nudge_current
                add(
                    name,
                    "nudge current",
                    f"+-{i:g} A",
                    f"+-{lim.max_current:g} A",
                    i <= lim.max_current,
                )
            if roles["sources"]:
                i = limits.compliance_current
                found = f"[{lim.min_current_limit:g}, {lim.max_current:g}] A"
                ok = lim.min_current_limit <= i <= lim.max_current
                add(name, "current compliance", f"{i:g} A", found, ok)
                v = limits.max_input_voltage
                add(
                    name,
                    "source voltage",
                    f"+-{v:g} V",
                    f"+-{lim.max_voltage:g} V",
                    v <= lim.max_voltage,
                )
        return rows

    def _smu_roles(self, name: str) -> dict[str, list[tuple[str, int]]]:
        wiring = self.wiring
        sources = [
            (r.channel, n) for n, r in enumerate(wiring.sources) if r and r.instrument == name
        ]
        senses = [(r.channel, k) for k, r in enumerate(wiring.outputs) if r.instrument == name]
        return {"sources": sources, "senses": senses}

    def _smu_channels(self, name: str) -> list[str]:
        roles = self._smu_roles(name)
        return [ch for ch, _ in [*roles["sources"], *roles["senses"]]]

    def _build_ports(self) -> None:
        wiring = self.wiring
        hidden_nodes = self.network.hidden_nodes
        self._board_ports = []
        for name, board in self._boards.items():
            dacs = [
                (r.index, node)
                for node, r in enumerate(wiring.sources)
                if r and r.instrument == name
            ]
            adcs = [
                (r.index, int(node))
                for node, r in zip(hidden_nodes, wiring.hidden, strict=True)
                if r.instrument == name
            ]
            self._board_ports.append(
                BoardPort(
                    name,
                    board,
                    np.array([c for c, _ in dacs], dtype=int),
                    np.array([n for _, n in dacs], dtype=int),
                    np.array([c for c, _ in adcs], dtype=int),
                    np.array([n for _, n in adcs], dtype=int),
                )
            )
        self._smu_ports = []
        for name, smu in self._smus.items():
            roles = self._smu_roles(name)
            if not roles["sources"] and not roles["senses"]:
                continue
            port_class = TspPort if isinstance(smu, Keithley2600) else SmuPort
            self._smu_ports.append(port_class(name, smu, roles["sources"], roles["senses"]))

    # --- life cycle ----------------------------------------------------------------------
    def connect(self) -> Self:
        """Open and check every instrument, arm the SMUs, boards to network mode.

        Raises
        ------
        ConfigError
            The wiring does not fit the network.
        InstrumentError
            An instrument cannot be reached or cannot do what the config asks (the message
            names the check, what is needed and what the instrument has).
        """
        with self._lock:
            if self._closed:
                raise InstrumentError("bench", "connect", "the bench is closed")
            if self._connected:
                return self
            self.wiring  # noqa: B018 - resolve before touching anything
            try:
                self._open_all(strict=True)
                for row in self._capability_rows():
                    if row.ok is False:
                        raise InstrumentError(
                            row.instrument,
                            "*IDN?" if row.item in ("model", "identity") else "CAP?",
                            f"{row.item}: the config needs {row.expected}, the instrument has "
                            f"{row.found} (run `hil bench check`)",
                        )
                self._build_ports()
                self._connected = True
                self._arm()
            except BaseException:
                self._safe = False
                self.safe_state()
                raise
        return self

    def _arm(self) -> None:
        self._safe = False
        for port in self._board_ports:
            port.board.mode("network")
        for port in self._smu_ports:
            port.arm(self.limits)
        self._armed = True
        self._live = False

    def _ready(self) -> None:
        """Connect and arm if needed (after a safe_state the next operation re-arms)."""
        if not self._connected:
            self.connect()
        elif not self._armed:
            self._arm()
        self._safe = False

    def _quiesce(self) -> None:
        """Every SMU level to 0 before the boards leave network mode."""
        if not self._live:
            return
        overlapped(
            self._smu_ports,
            lambda p: p.send_apply(np.zeros(len(p.sources)), np.zeros(len(p.senses))),
            lambda p, line: p.finish_apply(line),
        )
        self._live = False

    def safe_state(self) -> None:
        """Every SMU to 0 V with its output off, every board aborted (DACs 0 V, idle).

        Never raises. An instrument that fails is reconnected once and tried again; those
        still failing are logged and listed in :attr:`unconfirmed_safe`.
        """
        with self._lock:
            unconfirmed = []
            for name, smu in list(self._smus.items()):
                port = SmuPort(name, smu, [], [])
                if not self._try_safe(name, port.make_safe, lambda s=smu: _reopen_smu(s)):
                    unconfirmed.append(name)
            for name, board in list(self._boards.items()):
                if not self._try_safe(name, board.abort, lambda b=board: _reopen_board(b)):
                    unconfirmed.append(name)
            self.unconfirmed_safe = tuple(unconfirmed)
            self._armed = False
            self._live = False
            self._safe = True

    @staticmethod
    def _try_safe(name: str, action: Callable[[], None], reopen: Callable[[], None]) -> bool:
        try:
            action()
            return True
        except Exception as first:  # noqa: BLE001 - the safe path must not raise
            log.warning("%s: safe state failed (%s); reconnecting to retry", name, first)
        try:
            reopen()
            action()
            return True
        except Exception as exc:  # noqa: BLE001
            log.error(
                "%s: could not reach its safe state (%s); switch its outputs off by hand",
                name,
                exc,
            )
            return False

    def close(self) -> None:
        """Safe state (unless nothing was applied since the last one), close every
        instrument, then ``on_close``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if not self._safe:
                    self.safe_state()
                for instrument in self.instruments.values():
                    instrument.close()
                if self._own_manager is not None:
                    self._own_manager.close()  # type: ignore[attr-defined]
            finally:
                self._boards, self._smus = {}, {}
                if self.on_close is not None:
                    self.on_close()

    def __enter__(self) -> Self:
        return self.connect()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- the four verbs ------------------------------------------------------------------
    def settle(self, inputs: np.ndarray, nudges: np.ndarray | None = None) -> Measurement:
        """Apply inputs (B, 2*inputs) V and nudges (B, 2*classes) A sample by sample and
        measure every node; see the module docstring for the commands one sample costs."""
        net = self.network
        inputs = np.atleast_2d(np.asarray(inputs, dtype=float))
        if inputs.shape[1] != net.n_input_sources:
            raise SafetyError(
                f"inputs must have shape (batch, {net.n_input_sources}), got {inputs.shape};"
                " nothing was applied"
            )
        if nudges is None:
            nudges = np.zeros((len(inputs), net.n_output_nodes))
        else:
            nudges = np.atleast_2d(np.asarray(nudges, dtype=float))
            if nudges.shape != (len(inputs), net.n_output_nodes):
                raise SafetyError(
                    f"nudges must have shape ({len(inputs)}, {net.n_output_nodes}), got "
                    f"{nudges.shape}; nothing was applied"
                )
            self.limits.check_nudges(nudges)
        self.limits.check_inputs(inputs)
        voltages = np.empty((len(inputs), net.n_nodes))
        sources = net.source_voltages_template.copy()
        with self._lock:
            self._ready()
            for b in range(len(inputs)):
                sources[: net.n_input_sources] = inputs[b]
                voltages[b] = self._settle_one(sources, nudges[b])
        return Measurement.from_voltages(net, voltages)

    def _settle_one(self, sources: np.ndarray, nudges: np.ndarray) -> np.ndarray:
        net = self.network
        for port in self._board_ports:
            port.set_sources(sources)
        overlapped(
            self._smu_ports,
            lambda p: p.send_apply(sources[p.source_nodes], nudges[p.sense_outputs]),
            lambda p, line: p.finish_apply(line),
        )
        self._live = bool(nudges.any()) or any(p.source_nodes.size for p in self._smu_ports)
        if self.config.settle_delay_s:
            time.sleep(self.config.settle_delay_s)
        voltages = np.zeros(net.n_nodes)
        voltages[: net.n_sources] = sources
        for port in self._board_ports:
            voltages[port.adc_nodes] = port.read_hidden(self.config.averaging)
        repeats = self.config.averaging
        readings = overlapped(
            self._smu_ports,
            lambda p: p.send_read(repeats),
            lambda p, line: p.finish_read(line, repeats),
        )
        for port, values in zip(self._smu_ports, readings, strict=True):
            voltages[net.output_nodes[port.sense_outputs]] = values
        self.samples_settled += 1
        return voltages

    def pulse(self, request: PulseRequest) -> PulseReport:
        """Apply programming pulses: board(s) to programming mode, ``PULSE:MANY`` lines
        (positive counts at +amplitude, negative at -amplitude), back to network mode."""
        request.check_devices(self.network.n_devices)
        self.limits.check_pulse(request)
        ids = np.asarray(request.device_ids, dtype=np.int64)
        counts = np.asarray(request.counts, dtype=np.int64)
        boards, rows, cols = self.wiring.device_lines
        plan: dict[str, list[tuple[int, int, float, int]]] = {}
        for d, n in zip(ids.tolist(), counts.tolist(), strict=True):
            if n:
                amp = request.amplitude_v if n > 0 else -request.amplitude_v
                plan.setdefault(boards[d], []).append((int(rows[d]), int(cols[d]), amp, abs(n)))
        with self._lock:
            self._ready()
            if plan:
                self._quiesce()
            for name, entries in plan.items():
                board = self._boards[name]
                board.mode("programming")
                board.pulse_many(entries, request.width_s, self.config.pulse_scheme)
                board.mode("network")
            self.pulse_counts[ids] += np.abs(counts)
        return PulseReport(ids, counts.copy(), np.zeros(len(ids), dtype=np.int64))

    def read_conductances(self, device_ids: np.ndarray | None = None) -> np.ndarray:
        """Conductances (S) read one ``READ`` each at ``read_voltage``: ``G = I / V``."""
        n = self.network.n_devices
        ids = np.arange(n) if device_ids is None else np.asarray(device_ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= n):
            raise SafetyError(f"device ids must be in [0, {n})")
        boards, rows, cols = self.wiring.device_lines
        v_read = self.config.read_voltage
        g = np.empty(len(ids))
        with self._lock:
            self._ready()
            self._quiesce()
            for name, board in self._boards.items():
                mine = [j for j, d in enumerate(ids.tolist()) if boards[d] == name]
                if not mine:
                    continue
                board.mode("programming")
                for j in mine:
                    d = ids[j]
                    g[j] = board.read_device(int(rows[d]), int(cols[d]), v_read) / v_read
                board.mode("network")
        return g

    # --- hil bench check -----------------------------------------------------------------
    def check(self, reads_per_tile: int = 2) -> list[CheckRow]:
        """Identify every instrument, compare it with the config, read a few devices (the
        first and last of each tile), return to the safe state; one row per check.

        Raises
        ------
        ConfigError
            The wiring does not fit the network.
        """
        self.wiring  # noqa: B018 - a config error is not a check row
        with self._lock:
            rows = self._open_all(strict=False)
            rows += self._capability_rows()
            self._safe = False
            self.safe_state()  # from whatever state the instruments were left in
            boards = self.config.boards
            if all(b in self._boards for b in boards) and not any(
                r.ok is False for r in rows if r.instrument in boards
            ):
                rows += self._check_reads(reads_per_tile)
            else:
                rows.append(
                    CheckRow("-", "device reads", "board checks pass", "a board check failed", None)
                )
            self.safe_state()
            unsafe = ", ".join(self.unconfirmed_safe)
            rows.append(
                CheckRow(
                    "bench",
                    "safe state",
                    "outputs off, DACs 0 V, boards idle",
                    f"not confirmed: {unsafe}" if unsafe else "reached",
                    not unsafe,
                )
            )
        return rows

    def _check_reads(self, per_tile: int) -> list[CheckRow]:
        rows = []
        lo, hi = self.network.g_bounds
        boards, line_rows, line_cols = self.wiring.device_lines
        ids = []
        for tile in self.network.tiles:
            picks = np.linspace(tile.first_device, tile.first_device + tile.size - 1, per_tile)
            ids.extend(sorted({int(round(p)) for p in picks}))
        try:
            for board in self._boards.values():
                board.mode("programming")
            for d in ids:
                board = self._boards[boards[d]]
                tile, r, c = self.network.device_address(d)
                g = board.read_device(
                    int(line_rows[d]), int(line_cols[d]), self.config.read_voltage
                )
                g /= self.config.read_voltage
                rows.append(
                    CheckRow(
                        boards[d],
                        f"device {d} (tile {tile} r{r} c{c}, lines {line_rows[d]},{line_cols[d]})",
                        f"G in [{0.5 * lo:.3g}, {2 * hi:.3g}] S",
                        f"{g:.4g} S",
                        0.5 * lo <= g <= 2 * hi,
                    )
                )
        except InstrumentError as exc:
            rows.append(CheckRow(exc.instrument, "device reads", "replies", exc.reason, False))
        return rows


def _reopen_smu(smu: Smu) -> None:
    smu.close()
    smu.connect()


def _reopen_board(board: SerialBoard) -> None:
    board.close()
    board.open()
