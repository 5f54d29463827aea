"""SPICE netlist of a :class:`~simulators.circuit.Circuit`, written from its element view.

Every element of :meth:`Circuit.elements() <simulators.circuit.Circuit.elements>` becomes
SPICE lines:

===============  =========================================================================
element          SPICE
===============  =========================================================================
VoltageSource    ``V<name> <node> 0 dc <V>`` (inputs, biases and the diode clamp rails)
Resistor         ``R<name> <row line> <column> <1/G>`` (ohms)
Diode            ``D<name> <anode> <cathode> dclamp`` with one ``.model dclamp D(IS= N=)``
Amplifier        ``E`` (VCVS, gain A) to an internal node, a 0 V sense source ``V`` in series
                 to the crossbar line, and an ``F`` (CCCS, gain 1/A) drawing the sensed
                 current divided by A from the hidden node
CurrentSource    ``I<name> 0 <node> dc <A>``: SPICE pushes the current from its first node
                 through the source to its second, so this injects into ``<node>``
===============  =========================================================================

Ideal diodes have no SPICE counterpart (a hard clamp is not a device), so a network with
``diode.model: ideal`` is refused with :class:`~hil.errors.ConfigError`.

Options: :data:`~simulators.spice.numerics.TIGHT_OP_OPTIONS` (reltol, abstol, vntol, bypass,
itl1), which bring the operating point within ~1e-15 V of an exact Newton solve, plus
``gmin`` from the diode spec (ngspice puts it in parallel with every junction) and
``temp = tnom`` = the diode temperature, so that the saturation current is not rescaled.
A ``.save`` line keeps only the free nodes' voltages (and an optional marker node) in each
operating point's results: every other node is a source, a clamp rail or an amplifier copy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hil.errors import ConfigError
from hil.network import DiodeSpec
from simulators.circuit import (
    Amplifier,
    Circuit,
    CurrentSource,
    Diode,
    Resistor,
    VoltageSource,
)
from simulators.spice.numerics import TIGHT_OP_OPTIONS

#: Name of the one diode model every clamping diode uses.
DIODE_MODEL = "dclamp"
# Node names per ``.save`` line (keeps lines short for any network size).
_SAVE_PER_LINE = 50


@dataclass(frozen=True)
class Netlist:
    """A netlist and the ngspice names needed to drive and read it.

    Attributes
    ----------
    lines : list of str
        The netlist, title first, ``.end`` last.
    sources : list of str
        Instance name of the voltage source behind every source node, length ``n_sources``
        (input sources then bias sources, in node order).
    nudges : list of str
        Instance name of the nudge current source of every output node, length
        ``n_output_nodes``.
    resistors : list of str
        Instance name of every crossbar device, length ``n_devices`` (device id order).
    layers : list of list of str
        ngspice node names of every free layer's nodes (hidden layers then outputs).
    marker : str
        Name of a node that only this netlist has (``""`` when none was asked for): an
        operating point whose results hold it was solved on this netlist.
    resistor_lines : list of int
        Index in :attr:`lines` of every crossbar device's line (device id order).
    """

    lines: list[str]
    sources: list[str]
    nudges: list[str]
    resistors: list[str]
    layers: list[list[str]]
    marker: str
    resistor_lines: list[int]

    def render(self, conductances: np.ndarray) -> list[str]:
        """The same netlist with the crossbar devices at other conductances.

        Much faster than writing the netlist again from the element view: only the
        resistor values are formatted.

        Parameters
        ----------
        conductances : ndarray, shape (n_devices,)
            Conductances in siemens, positive and finite.

        Raises
        ------
        ConfigError
            If a conductance is not positive and finite.
        """
        g = np.asarray(conductances, dtype=float)
        if g.shape != (len(self.resistors),):
            raise ValueError(
                f"conductances must have shape ({len(self.resistors)},), got {g.shape}"
            )
        bad = np.flatnonzero(~(np.isfinite(g) & (g > 0)))
        if bad.size:
            raise ConfigError(
                f"a crossbar conductance must be positive and finite, got {g[bad[0]]} for "
                f"device {bad[0]}"
            )
        lines = list(self.lines)
        for index, ohms in zip(self.resistor_lines, (1.0 / g).tolist(), strict=True):
            head = lines[index].rsplit(" ", 1)[0]
            lines[index] = f"{head} {ohms!r}"
        return lines


def format_number(value: float) -> str:
    """Shortest text that parses back to exactly ``value`` (no SPICE scale suffixes)."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot write a non-finite value into a netlist: {value!r}")
    return repr(value)


def resistance(conductance: float) -> float:
    """Resistance (ohm) of a crossbar device of ``conductance`` siemens (> 0)."""
    if not conductance > 0 or not math.isfinite(conductance):
        raise ConfigError(f"a crossbar conductance must be positive and finite, got {conductance}")
    return 1.0 / conductance


def check_diodes(diode: DiodeSpec) -> None:
    """Raise :class:`ConfigError` unless the diodes have a SPICE model (Shockley)."""
    if diode.model != "shockley":
        raise ConfigError(
            f"network.diode.model is {diode.model!r}: ideal diodes (a hard clamp) have no SPICE "
            "counterpart, so the spice engine cannot simulate them; use diode.model: shockley "
            "(or the native engine)"
        )


def options_line(diode: DiodeSpec, extra: str = "") -> str:
    """The ``.options`` line: tight tolerances, the diode's gmin, temperature = TNOM.

    Parameters
    ----------
    diode : DiodeSpec
    extra : str
        More ``name=value`` options appended at the end (they override earlier ones).
    """
    temp = format_number(diode.temperature_c)
    line = f"{TIGHT_OP_OPTIONS} gmin={format_number(diode.gmin)} temp={temp} tnom={temp}"
    return f"{line} {extra}".rstrip()


def write_netlist(
    circuit: Circuit, title: str | None = None, options: str = "", marker: str = ""
) -> Netlist:
    """Write the SPICE netlist of ``circuit`` with its present conductances.

    Parameters
    ----------
    circuit : Circuit
        A network with Shockley diodes and its conductances (S).
    title : str, optional
        First line of the netlist (default: the network's description).
    options : str
        Extra ngspice options (``name=value ...``) appended to the ``.options`` line.
    marker : str
        If given, a node of this name is added (held at 0 V by its own source) so that an
        operating point can be recognised as this netlist's; must be a valid node name.

    Returns
    -------
    Netlist
        All sources at their circuit value (inputs and nudges at 0), ready to ``alter``.

    Raises
    ------
    ConfigError
        If the diodes are ideal, or a conductance is not positive and finite.
    """
    net = circuit.network
    diode = net.spec.diode
    check_diodes(diode)
    node_index = {f"n{k}": k for k in range(net.n_nodes)}
    sources = [""] * net.n_sources
    nudges = [""] * net.n_output_nodes
    resistors = [""] * net.n_devices
    resistor_lines = [0] * net.n_devices
    lines = [_title(title or net.describe())]
    for element in circuit.elements():
        lines.extend(_element_lines(element))
        match element:
            case VoltageSource(name=name, node=node, role="input" | "bias"):
                sources[node_index[node]] = name
            case CurrentSource(name=name, index=index):
                nudges[index] = name
            case Resistor(name=name, device_id=device_id):
                resistors[device_id] = name
                resistor_lines[device_id] = len(lines) - 1
    layers = [[f"n{node}" for node in layer.nodes] for layer in net.layers]
    saved = [name for layer in layers for name in layer]
    if marker:
        lines.append(f"vmark{marker} {marker} 0 dc 0")
        saved.append(marker)
    # Only the free nodes are results: every other node is a source, a clamp rail or an
    # amplifier's copy. Saving just them keeps each operating point's plot small.
    for start in range(0, len(saved), _SAVE_PER_LINE):
        lines.append(".save " + " ".join(saved[start : start + _SAVE_PER_LINE]))
    lines.append(
        f".model {DIODE_MODEL} D(IS={format_number(diode.saturation_current)} "
        f"N={format_number(diode.ideality)})"
    )
    lines.append(options_line(diode, options))
    lines.append(".end")
    return Netlist(lines, sources, nudges, resistors, layers, marker, resistor_lines)


def _title(text: str) -> str:
    """A one-line title (SPICE never parses the first line as an element)."""
    return " ".join(text.split()) or "circuit"


def _element_lines(element: object) -> Sequence[str]:
    """SPICE lines of one element of the circuit's element view."""
    match element:
        case VoltageSource(name=name, node=node, value=value):
            return (f"{name} {node} 0 dc {format_number(value)}",)
        case Resistor(name=name, a=a, b=b, g=g):
            return (f"{name} {a} {b} {format_number(resistance(g))}",)
        case Diode(name=name, anode=anode, cathode=cathode):
            return (f"{name} {anode} {cathode} {DIODE_MODEL}",)
        case Amplifier(name=name, inp=inp, out=out, gain=gain):
            internal = f"x{name}"
            return (
                f"e{name} {internal} 0 {inp} 0 {format_number(gain)}",
                f"v{name} {internal} {out} dc 0",  # senses the current into the crossbar line
                f"f{name} {inp} 0 v{name} {format_number(1.0 / gain)}",
            )
        case CurrentSource(name=name, node=node):
            return (f"{name} 0 {node} dc 0",)
    raise TypeError(f"no SPICE counterpart for circuit element {element!r}")
