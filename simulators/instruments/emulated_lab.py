"""The emulated lab: every instrument of a lab config, emulated and wired to one crossbar.

:class:`EmulatedLab` starts a :class:`~simulators.instruments.board_server.BoardServer` (on a
pty) for every board and a :class:`~simulators.instruments.smu_server.SmuServer` (on a
loopback TCP port) for every SMU of a :class:`~hil.config.lab.LabBenchConfig`, all attached
to one :class:`~simulators.instruments.crossbar_backends.CrossbarCircuit` whose physics is a
simulated bench. The drivers then reach them at :attr:`EmulatedLab.addresses`, exactly as they
would reach the physical instruments. :meth:`EmulatedLab.state_dict` and
:meth:`~EmulatedLab.load_state_dict` save and restore the emulated devices (the physics), so
a lab bench's checkpoint holds them and a resumed run continues on the same devices.

Examples
--------
>>> physics = SimulatedBench(network, seed=0)                         # doctest: +SKIP
>>> with EmulatedLab(physics, config) as lab:                          # doctest: +SKIP
...     bench = LabBench(network, config, addresses=lab.addresses).connect()
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

import numpy as np

from hil.bench import SafetyLimits
from hil.config.lab import EmulatedBoardConfig, LabBenchConfig, Wiring
from hil.config.simulated import SimulatedBenchConfig
from hil.errors import ConfigError
from hil.vocabulary import SmuDriverName
from simulators.instruments.board_server import BoardServer, BoardSpec
from simulators.instruments.crossbar_backends import (
    BoardState,
    CrossbarCircuit,
    CrossbarSmuServer,
    Physics,
    stateful,
)
from simulators.instruments.smu_models import EMULATED_MODELS, ChannelState
from simulators.instruments.smu_server import SmuServer

#: Model each SMU driver is emulated as.
EMULATED_SMU_MODELS: dict[SmuDriverName, str] = {
    "keithley2400": "2400",
    "keithley2450": "2450",
    "keithley2600": "2636B",
    "keysight_b2900": "B2902A",
}

#: Limits of an emulated lab's physics unless its config sets them: the instruments guard.
EMULATED_PHYSICS_LIMITS = SafetyLimits(
    max_input_voltage=1e6,
    max_nudge_current=1e3,
    compliance_current=1e3,
    compliance_voltage=1e6,
    pulse_amplitude=(1e-9, 1e6),
    pulse_width=(1e-15, 1e6),
    max_pulses_per_request=10**9,
)


def physics_config(config: LabBenchConfig) -> SimulatedBenchConfig:
    """The simulated bench behind an emulated lab: ``emulate.physics`` with the emulator's
    defaults for what it leaves out (wide limits, the board's pulse scheme)."""
    if config.emulate is None:
        raise ConfigError("bench.emulate is not set: this lab bench is not emulated")
    physics = config.emulate.physics
    changes: dict[str, object] = {}
    if "limits" not in physics.model_fields_set:
        changes["limits"] = EMULATED_PHYSICS_LIMITS
    if "scheme" not in physics.model_fields_set:
        changes["scheme"] = config.pulse_scheme
    return physics.model_copy(update=changes)


class EmulatedLab:
    """Emulators for every instrument of a lab config, on one simulated crossbar.

    Parameters
    ----------
    physics : Physics
        The simulated bench behind the instruments; its network is the one the config wires.
    config : LabBenchConfig
        Instruments and wiring; ``config.emulate.boards`` sets what each board reports.

    Attributes
    ----------
    addresses : dict of str
        Instrument name -> address its driver opens (pty path or VISA resource), after
        :meth:`start`.
    boards : dict of BoardServer
    smus : dict of SmuServer
    circuit : CrossbarCircuit
    """

    def __init__(self, physics: Physics, config: LabBenchConfig) -> None:
        self.physics = physics
        self.config = config
        self.addresses: dict[str, str] = {}
        self.boards: dict[str, BoardServer] = {}
        self.smus: dict[str, SmuServer] = {}
        self.circuit: CrossbarCircuit | None = None
        self._stopped = False

    def start(self) -> Self:
        """Resolve the wiring and start every emulator; returns ``self``."""
        if self.circuit is not None:
            if self._stopped:
                raise RuntimeError("an emulated lab cannot be restarted; make a new one")
            return self
        config = self.config
        wiring = config.resolve(self.physics.network)
        scheme = getattr(self.physics, "scheme", config.pulse_scheme)
        if scheme != config.pulse_scheme:
            raise ConfigError(
                f"bench.pulse_scheme is {config.pulse_scheme} but the emulated physics models "
                f"{scheme}; set bench.emulate.physics.scheme to match"
            )
        circuit = CrossbarCircuit(self.physics, wiring, config.pulse_scheme)
        try:
            for name in config.boards:
                spec = self.board_spec(name, wiring)
                backend = circuit.attach_board(name, spec.n_dac)
                server = BoardServer(backend, spec, baudrate=self.board_baudrate(name)).start()
                self.boards[name] = server
                self.addresses[name] = server.port
            for name in config.smus:
                server = CrossbarSmuServer(self.smu_model(name), circuit, name).start()
                circuit.attach_smu(name, server)
                self.smus[name] = server
                self.addresses[name] = server.address
        except BaseException:
            self.stop()
            raise
        self.circuit = circuit
        return self

    @property
    def running(self) -> bool:
        """Whether the emulators are serving."""
        return self.circuit is not None and not self._stopped

    def stop(self) -> None:
        """Stop every emulator; safe to call twice. Their last state stays readable
        (:meth:`board_state`, :meth:`smu_state`, :meth:`is_safe`)."""
        for server in [*self.smus.values(), *self.boards.values()]:
            server.stop()
        self._stopped = True

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- what is emulated ----------------------------------------------------------------
    def smu_model(self, name: str) -> str:
        """The emulated model of SMU ``name``: its configured model or its driver's default."""
        inst = self.config.instruments[name]
        known = EMULATED_SMU_MODELS[inst.driver]  # type: ignore[index]  # an SMU's driver
        model = inst.model or known
        if model not in EMULATED_MODELS or known != model:
            raise ConfigError(
                f"bench.instruments.{name}.model {model!r} cannot be emulated; the {inst.driver} "
                f"driver is emulated as a {known}"
            )
        return model

    def board_spec(self, name: str, wiring: Wiring) -> BoardSpec:
        """What board ``name`` reports: ``emulate.boards[name]``, the rest derived.

        Channel counts and line counts default to what the wiring uses, the DAC range to
        the largest source voltage the bench may apply, the rest to the emulator defaults.
        """
        config = self.config
        emulate = config.emulate.boards.get(name) if config.emulate else None
        cfg = emulate or EmulatedBoardConfig()
        dacs = [r.index for r in wiring.sources if r is not None and r.instrument == name]
        adcs = [r.index for r in wiring.hidden if r.instrument == name]
        rows, cols = wiring.line_extent(name)
        bias = [abs(v) for v in self.physics.network.spec.bias_voltages]
        v_max = max([config.limits.max_input_voltage, *bias])
        default = BoardSpec()
        fields = {
            "model": config.instruments[name].board_model,
            "serial": cfg.serial,
            "firmware": cfg.firmware or f"{cfg.protocol}.0.0",
            "protocol": cfg.protocol,
            "read_n": cfg.read_n or default.read_n,
            "n_dac": cfg.n_dac or max(dacs, default=0) + 1,
            "dac_range": cfg.dac_range or (-v_max, v_max),
            "n_adc": cfg.n_adc or max(adcs, default=0) + 1,
            "adc_range": cfg.adc_range or default.adc_range,
            "adc_bits": cfg.adc_bits or default.adc_bits,
            "rows": cfg.rows or max(rows, 1),
            "cols": cfg.cols or max(cols, 1),
            "pulse_amplitude": cfg.pulse_amplitude or default.pulse_amplitude,
            "pulse_width": cfg.pulse_width or default.pulse_width,
            "pulse_count": cfg.pulse_count or default.pulse_count,
            "read_voltage": cfg.read_voltage or default.read_voltage,
            "max_line": cfg.max_line or default.max_line,
        }
        return BoardSpec(**fields)

    def board_baudrate(self, name: str) -> float | None:
        """The line speed board ``name``'s emulated link is paced at (None: unpaced)."""
        emulate = self.config.emulate
        cfg = emulate.boards.get(name) if emulate else None
        return None if cfg is None else cfg.baudrate

    # --- state for checkpoints -----------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """The emulated devices: the physics' state (see
        :meth:`simulators.bench.SimulatedBench.state_dict`), pulses the board has queued
        applied first.

        The instruments' settings are not part of it: a bench re-arms them when it
        connects. Raises ConfigError when the physics cannot save its state.
        """
        if self.circuit is None:  # not started: nothing queued, nothing cached
            return stateful(self.physics).state_dict()
        return self.circuit.state_dict()

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Put the emulated devices where :meth:`state_dict` found them (running or not).

        Raises
        ------
        ConfigError
            The state belongs to another network or device model (the physics' check).
        """
        if self.circuit is None:
            stateful(self.physics).load_state_dict(dict(state))
        else:
            self.circuit.load_state_dict(state)

    # --- what the instruments are doing (for tests and checks) ---------------------------
    def board_state(self, name: str) -> BoardState:
        """Mode and DAC outputs of board ``name``."""
        if self.circuit is None:
            raise RuntimeError("the emulated lab is not started")
        return self.circuit.board_state(name)

    def smu_state(self, name: str, channel: str) -> ChannelState:
        """Source settings of ``channel`` of SMU ``name``."""
        return self.smus[name].state(channel)

    def is_safe(self) -> bool:
        """Every SMU output off at 0 V, every board idle with its DACs at 0 V."""
        for server in self.smus.values():
            for channel in server.model.channels:
                state = server.state(channel)
                if state.output_on or state.voltage_level != 0.0:
                    return False
        for name in self.boards:
            state = self.board_state(name)
            if state.mode != "idle" or state.dacs.any():
                return False
        return True
