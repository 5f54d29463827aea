"""What a lab config asks of its instruments, compared with what they report.

The comparisons behind both :meth:`LabBench.connect <drivers.lab_bench.LabBench.connect>`
(which raises on the first mismatch) and ``hil bench check``
(:func:`drivers.bench_check.check_bench`, which reports every one): each is a
:class:`CheckRow` of what the config needs and what the instrument has.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hil.bench import PulseCalibration
from hil.config.lab import InstrumentConfig, LabBenchConfig, Wiring
from hil.network import Network

from .lab_ports import fmt_range, smu_roles
from .serial_board import SerialBoard
from .smu import Smu


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
        """``ok``, ``MISMATCH`` or ``skipped``."""
        return {True: "ok", False: "MISMATCH", None: "skipped"}[self.ok]


def smu_model_matches(inst: InstrumentConfig, smu: Smu) -> bool:
    """Whether an open SMU is the model its config names (any model, if none)."""
    return inst.model is None or smu.model == inst.model.upper()


def capability_rows(
    config: LabBenchConfig,
    network: Network,
    wiring: Wiring,
    calibration: PulseCalibration,
    boards: Mapping[str, SerialBoard],
    smus: Mapping[str, Smu],
) -> list[CheckRow]:
    """Compare open instruments with what a lab config asks of them.

    Boards: DAC and ADC channel counts and ranges, crossbar lines, pulse amplitude, width
    and count, read voltage. SMUs: the wired channels, voltage and current compliance,
    nudge current and source voltage.

    Parameters
    ----------
    config : LabBenchConfig
    network : Network
    wiring : Wiring
        ``config``'s wiring resolved against ``network``.
    calibration : PulseCalibration
        The pulse shape programming uses (the boards must be able to apply it).
    boards, smus : mapping of str
        The open instruments by name.

    Returns
    -------
    list of CheckRow
        One row per comparison; every ``ok`` is True or False.
    """
    rows: list[CheckRow] = []
    limits, net, cal = config.limits, network, calibration

    def add(name: str, item: str, expected: str, found: str, ok: bool) -> None:
        rows.append(CheckRow(name, item, expected, found, bool(ok)))

    template = net.source_voltages_template
    for name, board in boards.items():
        caps = board.capabilities
        dacs = [(n, r.index) for n, r in enumerate(wiring.sources) if r and r.instrument == name]
        adcs = [r.index for r in wiring.hidden if r.instrument == name]
        if dacs:
            need = max(c for _, c in dacs) + 1
            add(name, "DAC channels", f">= {need}", str(caps.n_dac), caps.n_dac >= need)
            v = max(
                limits.max_input_voltage if n < net.n_input_sources else abs(template[n])
                for n, _ in dacs
            )
            rng = caps.dac_range
            add(name, "DAC range", f"covers +-{v:g} V", fmt_range(rng, "V"), _covers(rng, -v, v))
        if adcs:
            need = max(adcs) + 1
            add(name, "ADC channels", f">= {need}", str(caps.n_adc), caps.n_adc >= need)
            lo, hi = net.spec.diode.v_low, net.spec.diode.v_high
            rng = caps.adc_range
            want = f"covers [{lo:g}, {hi:g}] V (diode clamps)"
            add(name, "ADC range", want, fmt_range(rng, "V"), _covers(rng, lo, hi))
        n_rows, n_cols = wiring.line_extent(name)
        if not n_rows:
            continue
        found = f"{caps.rows} x {caps.cols}"
        ok = caps.rows >= n_rows and caps.cols >= n_cols
        add(name, "crossbar lines", f">= {n_rows} x {n_cols}", found, ok)
        amp = max(limits.pulse_amplitude[1], cal.amplitude_v)
        rng = caps.pulse_amplitude
        want = f"covers +-{amp:g} V (limits, calibration)"
        add(name, "pulse amplitude", want, fmt_range(rng, "V"), _covers(rng, -amp, amp))
        w_lo = min(limits.pulse_width[0], cal.width_s)
        w_hi = max(limits.pulse_width[1], cal.width_s)
        rng = caps.pulse_width
        want = f"covers [{w_lo:g}, {w_hi:g}] s"
        add(name, "pulse width", want, fmt_range(rng, "s"), _covers(rng, w_lo, w_hi))
        n = limits.max_pulses_per_request
        found = f"[{caps.pulse_count[0]}, {caps.pulse_count[1]}]"
        add(name, "pulses per command", f">= {n}", found, caps.pulse_count[1] >= n)
        v_read, rng = config.read_voltage, caps.read_voltage
        ok = _covers(rng, v_read, v_read)
        add(name, "read voltage", f"{v_read:g} V", fmt_range(rng, "V"), ok)
    for name, smu in smus.items():
        lim = smu.limits
        roles = smu_roles(wiring, name)
        used = roles.channels
        ok = all(ch in smu.channels for ch in used)
        add(name, "channels", ", ".join(used) or "(none)", ", ".join(smu.channels), ok)
        if roles.senses:
            v = limits.compliance_voltage
            found = f"[{lim.min_voltage_limit:g}, {lim.max_voltage:g}] V"
            ok = lim.min_voltage_limit <= v <= lim.max_voltage
            add(name, "voltage compliance", f"{v:g} V", found, ok)
            i = limits.max_nudge_current
            ok = i <= lim.max_current
            add(name, "nudge current", f"+-{i:g} A", f"+-{lim.max_current:g} A", ok)
        if roles.sources:
            i = limits.compliance_current
            found = f"[{lim.min_current_limit:g}, {lim.max_current:g}] A"
            ok = lim.min_current_limit <= i <= lim.max_current
            add(name, "current compliance", f"{i:g} A", found, ok)
            v = limits.max_input_voltage
            ok = v <= lim.max_voltage
            add(name, "source voltage", f"+-{v:g} V", f"+-{lim.max_voltage:g} V", ok)
    return rows


def _covers(bounds: tuple[float, float], lo: float, hi: float) -> bool:
    """Whether the inclusive range ``bounds`` holds all of ``[lo, hi]``."""
    return bounds[0] <= lo and hi <= bounds[1]
