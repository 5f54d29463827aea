"""LabBench: the Bench protocol on instruments, a crossbar board and source-measure units.

A :class:`LabBench` is assembled from a :class:`~hil.config.lab.LabBenchConfig`: it opens
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

Faults: a timeout, a lost connection, an error reply or queued error raises
:class:`~hil.errors.InstrumentError` naming the instrument, the command and the reason, as
soon as the exchange in progress has finished. A flagged reading (a channel in compliance,
an ADC overflow) is a fault too under ``flagged_samples: raise`` (the default); under
``record`` it is marked in the :class:`~hil.bench.Measurement`'s ``compliance`` and
``overflow`` arrays and the settle carries on. After a fault the caller (the trainer runs
inside :func:`hil.bench.in_safe_hands`) calls :meth:`LabBench.safe_state`, which sets every
SMU to 0 V with its output off and aborts every board (DACs at 0 V, idle), reconnecting once
to an instrument that does not answer, and reports any it could not confirm.

Checkpoints: :meth:`LabBench.state_dict` holds the bench's counters (pulses per device,
samples settled) and, for an emulated lab, the emulated devices (the ``emulator``'s state,
under ``emulator.*``), so a resumed run continues counting and, emulated, continues on the
same devices. A physical crossbar keeps its own state (:attr:`LabBench.restores_devices`
is False): :class:`hil.run.Run` keeps its counters at every way out, so a resume counts the
pulses after the last checkpoint too, and re-reads the devices. Pulses are counted as the board
confirms them (:class:`drivers.serial_board.PulseTally`), so a batch cut short by a fault or
Ctrl-C is counted exactly, up to pulses the board never answered for (logged).

``hil bench check`` is :func:`drivers.bench_check.check_bench`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Protocol, Self, runtime_checkable

import numpy as np

from hil.bench import (
    Measurement,
    PulseCalibration,
    PulseReport,
    PulseRequest,
    SafeStateReport,
    check_device_ids,
    check_settle_args,
)
from hil.config.lab import InstrumentConfig, LabBenchConfig, Wiring
from hil.errors import ConfigError, EmergencyStop, InstrumentError
from hil.network import Network

from .keithley2600 import Keithley2600
from .lab_ports import BoardPort, SmuPort, TspPort, overlapped, smu_roles
from .lab_requirements import CheckRow, capability_rows, smu_model_matches
from .registry import board_driver, smu_driver
from .serial_board import PulseTally, SerialBoard
from .smu import Smu

log = logging.getLogger(__name__)

#: Prefix of the emulator's entries in :meth:`LabBench.state_dict`.
EMULATOR_PREFIX = "emulator."


@runtime_checkable
class SupportsState(Protocol):
    """What a lab bench needs of the emulated lab behind it: its devices' state.

    Implemented by :class:`simulators.instruments.emulated_lab.EmulatedLab`; the drivers
    never import the simulators, so the bench sees it only through this protocol.
    """

    def state_dict(self) -> dict[str, np.ndarray]:
        """The emulated devices' state as numpy arrays."""
        ...

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what :meth:`state_dict` returned (ConfigError if it does not fit)."""
        ...


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
    emulator : SupportsState, optional
        The emulated lab behind the addresses, if any: its devices are saved and restored
        with the bench's state (:meth:`state_dict`); otherwise kept for inspection.
    resource_manager : pyvisa.ResourceManager, optional
        Used to open the SMUs; default pyvisa-py's manager (one per process, shared with
        every other bench, so :meth:`close` closes the bench's SMUs but leaves it open).

    Attributes
    ----------
    limits : SafetyLimits
    calibration : PulseCalibration
    pulse_counts : ndarray of int, shape (n_devices,)
        Pulses delivered to every device by this bench (and by the runs it resumes), as the
        boards confirmed them.
    samples_settled : int
        Samples settled so far (one per row of every ``settle``).

    Notes
    -----
    The constructor only stores its arguments; :meth:`connect` (or the first operation, or
    ``with``) opens and checks the instruments, arms the SMUs and puts the boards in network
    mode. Arming is :meth:`drivers.lab_ports.SmuPort.arm`, in the safe order: reset, function
    and levels 0 with the output off, compliance set and read back, error queue empty, and
    only then the outputs on (at 0 V / 0 A); it runs once per connect or safe state, not per
    settle.
    """

    def __init__(
        self,
        network: Network,
        config: LabBenchConfig,
        *,
        addresses: Mapping[str, str] | None = None,
        calibration: PulseCalibration | None = None,
        on_close: Callable[[], None] | None = None,
        emulator: SupportsState | None = None,
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
        self._lock = threading.RLock()
        self._stop_settle = threading.Event()  # set by a safe state from another thread
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
    def lock(self) -> threading.RLock:
        """Held by every operation; hold it to run several without another thread's in
        between (the bench check does)."""
        return self._lock

    @property
    def boards(self) -> Mapping[str, SerialBoard]:
        """The open boards by name (read-only)."""
        return MappingProxyType(self._boards)

    @property
    def smus(self) -> Mapping[str, Smu]:
        """The open SMUs by name (read-only)."""
        return MappingProxyType(self._smus)

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

    def open_instruments(self, *, strict: bool = True) -> dict[str, InstrumentError]:
        """Open every configured instrument not open yet (a board also checks its model).

        Nothing is sent beyond identification and capability queries: no output is armed.

        Parameters
        ----------
        strict : bool
            Raise the first failure; otherwise carry on with the next instrument.

        Returns
        -------
        dict of str to InstrumentError
            The instruments that could not be opened (empty when ``strict``).
        """
        failures: dict[str, InstrumentError] = {}
        with self._lock:
            for name in self.config.instruments:
                if name in self.instruments:
                    continue
                try:
                    self._open(name)
                except InstrumentError as exc:
                    if strict:
                        raise
                    failures[name] = exc
        return failures

    def capability_rows(self) -> list[CheckRow]:
        """Every open instrument compared with what the config asks of it
        (:func:`drivers.lab_requirements.capability_rows`)."""
        return capability_rows(
            self.config, self.network, self.wiring, self.calibration, self._boards, self._smus
        )

    def _address(self, name: str, inst: InstrumentConfig) -> str:
        address = self.addresses.get(name) or inst.address
        if address is None:
            raise ConfigError(f"bench.instruments.{name}.address is not set")
        return address

    def _open(self, name: str) -> None:
        inst = self.config.instruments[name]
        address = self._address(name, inst)
        if inst.kind == "board":
            board = board_driver(inst.driver)(
                address,
                name=name,
                baudrate=inst.baudrate,
                timeout=inst.timeout_s,
                models=(inst.board_model,),
                protocol=inst.protocol,
                watchdog=inst.watchdog_s,
                pulse_allowance=inst.pulse_allowance_s,
            )
            board.open()
            self._boards[name] = board
            return
        if self.resource_manager is None and self._own_manager is None:
            import pyvisa

            self._own_manager = pyvisa.ResourceManager("@py")
        manager = self.resource_manager or self._own_manager
        smu = smu_driver(inst.driver)(
            address, name=name, resource_manager=manager, timeout=inst.timeout_s
        )
        smu.connect()
        self._smus[name] = smu

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
            roles = smu_roles(wiring, name)
            if not roles.channels:
                continue
            # a 2600 takes one TSP line for all its channels; SCPI SMUs one command each
            port_class = TspPort if isinstance(smu, Keithley2600) else SmuPort
            self._smu_ports.append(port_class(name, smu, roles.sources, roles.senses))

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
                self.open_instruments()
                for name, smu in self._smus.items():
                    inst = self.config.instruments[name]
                    if not smu_model_matches(inst, smu):
                        raise InstrumentError(
                            name, "*IDN?", f"model {smu.model} is not the configured {inst.model}"
                        )
                for row in self.capability_rows():
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
        """Boards to network mode, then every SMU armed (SmuPort.arm: outputs on last)."""
        self._safe = False
        for board_port in self._board_ports:
            board_port.board.mode("network")
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

    def safe_state(self) -> SafeStateReport:
        """Every SMU to 0 V with its output off, every board aborted (DACs 0 V, idle).

        Never raises. An instrument that fails is reconnected once and tried again; those
        still failing are logged and named in the report's ``unconfirmed``. Called while
        another thread is inside an operation (an emergency stop during a pulse batch), it
        first tells every board to stop (:meth:`SerialBoard.interrupt`), so the batch ends
        between two pulses instead of running to its end.
        """
        self._interrupt_boards()
        with self._lock:
            self._stop_settle.clear()  # the settle it stopped (if any) has let go
            unconfirmed = []
            for name, smu in list(self._smus.items()):
                port = SmuPort(name, smu, [], [])
                if not self._try_safe(name, port.make_safe, lambda s=smu: _reopen_smu(s)):
                    unconfirmed.append(name)
            for name, board in list(self._boards.items()):
                if not self._try_safe(name, board.abort, lambda b=board: _reopen_board(b)):
                    unconfirmed.append(name)
            self._armed = False
            self._live = False
            self._safe = True
        return SafeStateReport(tuple(unconfirmed))

    def _interrupt_boards(self) -> None:
        """ABORT every board now if another thread holds the bench (protocol 2 boards stop
        the command they run; that thread then gets its error and lets go)."""
        if self._lock.acquire(blocking=False):  # nobody else inside (or this thread is)
            self._lock.release()
            return
        self._stop_settle.set()  # a batch being settled stops at its next sample
        for board in list(self._boards.values()):
            board.interrupt()

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
                # The manager is not closed: pyvisa shares one per library between all its
                # instances, and closing it would cut the SMUs of every other bench in this
                # process (two runs of an API server, a test comparing two labs).
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
        measure every node; see the module docstring for the commands one sample costs.

        The arguments are checked (:func:`hil.bench.check_settle_args`) before anything is
        sent. A flagged reading raises its InstrumentError under ``flagged_samples: raise``
        (after the readings in progress); under ``record`` the Measurement's ``compliance``
        marks the nodes driven by a channel in compliance, its ``overflow`` the hidden nodes
        whose ADC channel overflowed.
        """
        net = self.network
        inputs, nudges = check_settle_args(net, self.limits, inputs, nudges)
        voltages = np.empty((len(inputs), net.n_nodes))
        compliance = np.zeros(voltages.shape, dtype=bool)
        overflow = np.zeros(voltages.shape, dtype=bool)
        sources = net.source_voltages_template.copy()
        with self._lock:
            self._ready()
            for b in range(len(inputs)):
                if self._stop_settle.is_set():  # a safe state waits for this thread
                    raise _settle_stopped(b, len(inputs))
                sources[: net.n_input_sources] = inputs[b]
                try:
                    voltages[b] = self._settle_one(sources, nudges[b], compliance[b], overflow[b])
                except InstrumentError as exc:
                    if self._stop_settle.is_set():  # the safe state's ABORT failed it: a stop
                        raise _settle_stopped(b, len(inputs)) from exc
                    raise
        return Measurement.from_voltages(net, voltages, compliance=compliance, overflow=overflow)

    def _settle_one(
        self,
        sources: np.ndarray,
        nudges: np.ndarray,
        compliance: np.ndarray,
        overflow: np.ndarray,
    ) -> np.ndarray:
        """Settle one sample; its node voltages, its flags marked in ``compliance`` and
        ``overflow`` (rows of the batch's arrays, shape (n_nodes,))."""
        net = self.network
        for board_port in self._board_ports:
            board_port.set_sources(sources)
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
        for board_port in self._board_ports:
            hidden = board_port.read_hidden(self.config.averaging)
            voltages[board_port.adc_nodes] = hidden.voltages
            overflow[board_port.adc_nodes] = hidden.overflow
            self._flagged(hidden.fault)  # before the SMUs are read, as a raise always was
        repeats = self.config.averaging
        readings = overlapped(
            self._smu_ports,
            lambda p: p.send_read(repeats),
            lambda p, line: p.finish_read(line, repeats),
        )
        for port, reading in zip(self._smu_ports, readings, strict=True):
            voltages[net.output_nodes[port.sense_outputs]] = reading.voltages
            compliance[port.wired_nodes(net.output_nodes)] = reading.compliance
        for reading in readings:
            self._flagged(reading.fault)
        self.samples_settled += 1
        return voltages

    def _flagged(self, fault: InstrumentError | None) -> None:
        """Raise a flagged reading's fault unless the config records flagged samples."""
        if fault is not None and self.config.flagged_samples == "raise":
            raise fault

    def pulse(self, request: PulseRequest) -> PulseReport:
        """Apply programming pulses: board(s) to programming mode, ``PULSE:MANY`` lines
        (positive counts at +amplitude, negative at -amplitude), back to network mode.

        ``pulse_counts`` is credited with what each board confirmed, line by line, so a
        request that fails part-way (an error reply, a timeout, Ctrl-C) has counted exactly
        the pulses delivered before the error propagates; pulses the board never answered
        for are left out and logged as uncertain.
        """
        request.check_devices(self.network.n_devices)
        self.limits.check_pulse(request)
        ids = np.asarray(request.device_ids, dtype=np.int64)
        counts = np.asarray(request.counts, dtype=np.int64)
        boards, rows, cols = self.wiring.device_lines
        plan: dict[str, tuple[list[int], list[tuple[int, int, float, int]]]] = {}
        for d, n in zip(ids.tolist(), counts.tolist(), strict=True):
            if n:
                amp = request.amplitude_v if n > 0 else -request.amplitude_v
                devices, entries = plan.setdefault(boards[d], ([], []))
                devices.append(d)
                entries.append((int(rows[d]), int(cols[d]), amp, abs(n)))
        with self._lock:
            self._ready()
            if plan:
                self._quiesce()
            for name, (devices, entries) in plan.items():
                board = self._boards[name]
                board.mode("programming")
                tally = PulseTally()
                try:
                    board.pulse_many(
                        entries, request.width_s, self.config.pulse_scheme, tally=tally
                    )
                finally:  # whatever stopped it: credit what the board confirmed
                    self._credit(name, devices, tally)
                board.mode("network")
        return PulseReport(ids, counts.copy(), np.zeros(len(ids), dtype=np.int64))

    def _credit(self, board: str, devices: list[int], tally: PulseTally) -> None:
        """Add the pulses ``tally`` confirms to ``pulse_counts`` (entry k is ``devices[k]``;
        a device listed twice gets both); log the ones left uncertain."""
        delivered = tally.delivered()
        np.add.at(
            self.pulse_counts, np.asarray(devices[: len(delivered)], dtype=np.int64), delivered
        )
        if tally.uncertain:
            first = tally.completed
            log.warning(
                "%s: %d pulse(s) to %d device(s) (ids %s) may or may not have been delivered "
                "(the board did not answer for them); pulse_counts leaves them out",
                board,
                tally.pulses_uncertain,
                tally.uncertain,
                _ids_words(devices[first : first + tally.uncertain]),
            )

    # --- state for checkpoints -----------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """The bench's counters and, for an emulated lab, its devices (for checkpoints).

        Keys: ``pulse_counts`` (shape (n_devices,)), ``samples_settled`` (a scalar) and
        ``emulator.*`` (the emulator's :meth:`SupportsState.state_dict`) when the bench
        was given a stateful emulator. A physical crossbar keeps its own device state.
        """
        with self._lock:
            state = {
                "pulse_counts": self.pulse_counts.copy(),
                "samples_settled": np.array(self.samples_settled, dtype=np.int64),
            }
            if isinstance(self.emulator, SupportsState):
                emulated = self.emulator.state_dict()
                state.update({f"{EMULATOR_PREFIX}{k}": v for k, v in emulated.items()})
        return state

    @property
    def restores_devices(self) -> bool:
        """True for an emulated lab (its devices are in the state), False for a physical
        crossbar: it keeps its own state, so a resumed run re-reads it and continues
        counting from the counters the last run left (see :mod:`hil.run`)."""
        return isinstance(self.emulator, SupportsState)

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what :meth:`state_dict` saved: counting goes on from the saved counts,
        an emulated lab's devices are where they were.

        Raises
        ------
        ConfigError
            The state is not a lab bench's, belongs to a network with another number of
            devices, or holds emulated devices for a physical bench (or none for an
            emulated one); or the emulator refuses its part. The counters are left as they
            were.
        """
        missing = {"pulse_counts", "samples_settled"} - set(state)
        if missing:
            raise ConfigError(
                f"saved bench state lacks {', '.join(sorted(missing))}: not a lab bench's state"
            )
        counts = np.asarray(state["pulse_counts"])
        n = self.network.n_devices
        if counts.shape != (n,):
            raise ConfigError(
                f"saved lab bench state counts pulses for {counts.size} devices but the "
                f"network has {n}: it belongs to another network"
            )
        emulated = {
            k.removeprefix(EMULATOR_PREFIX): np.asarray(v)
            for k, v in state.items()
            if k.startswith(EMULATOR_PREFIX)
        }
        stateful = isinstance(self.emulator, SupportsState)
        if emulated and not stateful:
            raise ConfigError(
                "saved bench state holds emulated devices but this lab bench is not "
                "emulated: resume an emulated run on its emulated lab"
            )
        if stateful and not emulated:
            raise ConfigError(
                "saved bench state holds no emulated devices (a physical bench's state?) but "
                "this lab bench is emulated"
            )
        with self._lock:
            if stateful:
                assert self.emulator is not None
                self.emulator.load_state_dict(emulated)  # first: it may refuse the state
            self.pulse_counts[:] = counts  # in place: holders of the array see the counts
            self.samples_settled = int(state["samples_settled"])

    def read_conductances(self, device_ids: np.ndarray | None = None) -> np.ndarray:
        """Conductances (S) read at ``read_voltage``: ``G = I / V``.

        The devices are grouped by board; each board reads its share in blocks of rows and
        tiles (``READ:ROW`` / ``READ:TILE``, protocol 2: a few commands for every device of
        a tile) or one ``READ`` per device (protocol 1); see
        :meth:`SerialBoard.read_devices`.
        """
        n = self.network.n_devices
        ids = np.arange(n) if device_ids is None else check_device_ids(device_ids, n)
        boards, rows, cols = self.wiring.device_lines
        on_board = np.asarray(boards)[ids]
        v_read = self.config.read_voltage
        g = np.empty(len(ids))
        with self._lock:
            self._ready()
            self._quiesce()
            for name, board in self._boards.items():
                mine = np.flatnonzero(on_board == name)
                if not mine.size:
                    continue
                board.mode("programming")
                picked = ids[mine]
                g[mine] = board.read_devices(rows[picked], cols[picked], v_read) / v_read
                board.mode("network")
        return g


def _ids_words(ids: list[int], shown: int = 10) -> str:
    """``3, 7, 12`` or ``3, 7, ... (25 in all)``."""
    words = ", ".join(str(d) for d in ids[:shown])
    return words if len(ids) <= shown else f"{words}, ... ({len(ids)} in all)"


def _settle_stopped(done: int, total: int) -> EmergencyStop:
    return EmergencyStop(
        f"a safe state was requested while settling: stopped after {done} of {total} samples"
    )


def _reopen_smu(smu: Smu) -> None:
    smu.close()
    smu.connect()


def _reopen_board(board: SerialBoard) -> None:
    board.close()
    board.open()
