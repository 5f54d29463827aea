"""One circuit description built from a :class:`hil.network.Network` and its conductances.

Two views of the same circuit:

* the **energy view** (:meth:`Circuit.energy_terms`): the local coefficients a minimiser needs
  — per free layer the diagonal of the linear part, the coupling to the next layer, and the
  drive from the sources. The native solver knows nothing of circuits beyond these.
* the **element view** (:meth:`Circuit.elements`): resistors, sources, diodes, amplifiers and
  nudge current sources with node names, from which a SPICE netlist is written.

Both are checked against each other by :meth:`Circuit.kcl_residual`, the physical current
balance at every free node, which is what Kirchhoff's current law says must vanish.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hil.network import DiodeSpec, Network


@dataclass(frozen=True)
class Resistor:
    """A crossbar device: conductance ``g`` (S) between ``a`` (row line) and ``b`` (column)."""

    name: str
    a: str
    b: str
    g: float
    device_id: int


@dataclass(frozen=True)
class VoltageSource:
    """An independent source of ``value`` volts from ``node`` to ground."""

    name: str
    node: str
    value: float
    role: Literal["input", "bias", "clamp"]
    index: int  # input source index, bias node index, or hidden layer index for clamps


@dataclass(frozen=True)
class Diode:
    """A junction diode from ``anode`` to ``cathode``, parameters from the network's DiodeSpec."""

    name: str
    anode: str
    cathode: str


@dataclass(frozen=True)
class Amplifier:
    """A bidirectional amplifier: ``V(out) = gain * V(inp)`` (VCVS), and the current that
    ``out`` supplies to the crossbar, divided by ``gain``, is drawn from ``inp`` (CCCS)."""

    name: str
    inp: str
    out: str
    gain: float


@dataclass(frozen=True)
class CurrentSource:
    """A nudge current source injecting current into ``node`` (A, positive = into node)."""

    name: str
    node: str
    index: int  # output node index


Element = Resistor | VoltageSource | Diode | Amplifier | CurrentSource


@dataclass(frozen=True)
class EnergyTerms:
    """Local coefficients of the circuit's energy, per free layer t (shapes in brackets).

    The gradient of the energy with respect to the voltages ``V_t`` [B, n_t] of layer t is::

        grad_t = diag_t * V_t - coupling_{t-1}.T @ V_{t-1} - coupling_t @ V_{t+1}
                 - U[:, drive_rows_t] @ drive_t - weight_t * I_t
                 + weight_t * diode_current(V_t)

    with ``U`` [B, n_sources] the source voltages and ``I_t`` the injected nudge currents.
    The physical current balance at a node is ``grad_t / weight_t``.
    """

    diag: list[np.ndarray]  # [n_t]
    coupling: list[np.ndarray]  # [n_t, n_{t+1}], one fewer than layers
    drive_rows: list[np.ndarray]  # [k_t] source nodes that feed layer t
    drive: list[np.ndarray]  # [k_t, n_t]
    weight: list[float]
    clamped: list[bool]  # whether the layer's nodes carry clamping diodes


# Largest exponent evaluated; beyond it a junction's energy is effectively infinite.
_EXP_CAP = 200.0


def junction(vd: np.ndarray, diode: DiodeSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Co-content (W), current (A) and conductance (S) of one junction at voltage ``vd``.

    Notes
    -----
    The law is ngspice's (dioload.c) so that the native solver matches SPICE to the last
    microvolt: ``I = I_s (exp(vd/vte) - 1) + gmin vd`` for ``vd >= -3 vte``, and below it
    ``I = -I_s (1 + (3 vte / (e vd))**3) + gmin vd`` (no breakdown), with ``vte = n kT/q``.
    The co-content is the integral of the current, continuous at ``-3 vte``.
    """
    vte, i_s, gmin = diode.thermal_voltage, diode.saturation_current, diode.gmin
    knee = -3.0 * vte
    forward = vd >= knee
    e = np.exp(np.minimum(np.where(forward, vd, knee) / vte, _EXP_CAP))
    vr = np.where(forward, knee, vd)  # reverse-branch voltage, kept away from 0
    cube = (3.0 * vte / (np.e * vr)) ** 3
    k = (3.0 * vte / np.e) ** 3
    energy = np.where(
        forward,
        i_s * vte * (e - 1.0) - i_s * vd,
        i_s * vte * (np.exp(-3.0) - 1.0) - i_s * vd + i_s * k * (0.5 / vr**2 - 0.5 / knee**2),
    )
    current = np.where(forward, i_s * (e - 1.0), -i_s * (1.0 + cube))
    conductance = np.where(forward, i_s / vte * e, 3.0 * i_s * cube / vr)
    return energy + 0.5 * gmin * vd**2, current + gmin * vd, conductance + gmin


def clamp_diodes(v: np.ndarray, diode: DiodeSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Co-content, current leaving the node, and conductance of a node's two diodes.

    The upper diode runs from the node to ``v_high``; the lower from ``v_low`` to the node.
    """
    e_hi, i_hi, g_hi = junction(v - diode.v_high, diode)
    e_lo, i_lo, g_lo = junction(diode.v_low - v, diode)
    return e_hi + e_lo, i_hi - i_lo, g_hi + g_lo


class Circuit:
    """A network with a definite set of conductances, ready to be solved.

    Parameters
    ----------
    network : Network
    conductances : ndarray, shape (n_devices,)
        Conductances in siemens; held by reference, so a bench that updates its array in
        place is seen by the next solve (call :meth:`invalidate` after doing so).
    """

    def __init__(self, network: Network, conductances: np.ndarray) -> None:
        if conductances.shape != (network.n_devices,):
            raise ValueError(
                f"conductances must have shape ({network.n_devices},), got {conductances.shape}"
            )
        self.network = network
        self.conductances = conductances
        self._terms: EnergyTerms | None = None

    def invalidate(self) -> None:
        """Forget cached coefficients after the conductances changed."""
        self._terms = None

    # --- energy view ----------------------------------------------------------------------
    def energy_terms(self) -> EnergyTerms:
        """Coefficients of the energy for the current conductances (cached)."""
        if self._terms is None:
            self._terms = self._build_terms()
        return self._terms

    def _build_terms(self) -> EnergyTerms:
        net = self.network
        n_layers = len(net.layers)
        diag = [np.zeros(len(layer.nodes)) for layer in net.layers]
        drive_rows, drive, coupling = [], [], []
        for t, tile in enumerate(net.tiles):
            g = net.tile_view(self.conductances, t)  # (rows, cols)
            w = tile.weight
            diag[t] += w * g.sum(axis=0)
            is_source = tile.row_nodes < net.n_sources
            # Rows driven by sources feed the layer directly: w * G * U. (The first tile's
            # rows are all sources: its 157,000 conductances at the paper's size need no
            # masked copy before the product.)
            drive_rows.append(tile.row_nodes[is_source])
            if not is_source.all():
                drive.append(w * g[is_source])
            elif w == 1.0:  # the first tile's weight: the conductances themselves (a view,
                drive.append(g)  # read-only; new conductances invalidate these terms)
            else:
                drive.append(w * g)
            if t > 0:
                a = tile.row_gain[~is_source][:, None]
                g_free = g[~is_source]  # (n_{t-1}, n_t)
                diag[t - 1] += w * (a**2 * g_free).sum(axis=1)
                coupling.append(w * a * g_free)
        weight = [layer.weight for layer in net.layers]
        clamped = [layer.kind == "hidden" for layer in net.layers]
        assert len(coupling) == n_layers - 1
        return EnergyTerms(diag, coupling, drive_rows, drive, weight, clamped)

    def source_voltages(self, input_voltages: np.ndarray) -> np.ndarray:
        """Voltages of all source nodes (B, n_sources) from input voltages (B, 2*inputs)."""
        net = self.network
        u = np.empty((len(input_voltages), net.n_sources))
        u[:] = net.source_voltages_template
        # the input sources are the first nodes (hil.network's node order): a slice, not a
        # scatter of every column
        u[:, : net.n_input_sources] = input_voltages
        return u

    def node_voltages(self, sources: np.ndarray, free: list[np.ndarray]) -> np.ndarray:
        """Assemble all node voltages (B, n_nodes) from sources and free layer voltages."""
        return np.concatenate([sources, *free], axis=1)

    # --- physics checks -------------------------------------------------------------------
    def diode_currents(self, v: np.ndarray) -> np.ndarray:
        """Current leaving hidden nodes through their two diodes (A), same shape as ``v``.

        Only meaningful for Shockley diodes; ideal diodes carry whatever current the clamp
        needs (see :meth:`kcl_residual`).
        """
        return clamp_diodes(v, self.network.spec.diode)[1]

    def kcl_residual(self, node_voltages: np.ndarray, nudges: np.ndarray) -> np.ndarray:
        """Net current leaving every free node through devices, amplifiers and diodes (A).

        Parameters
        ----------
        node_voltages : ndarray, shape (B, n_nodes)
        nudges : ndarray, shape (B, n_output_nodes)
            Currents injected into the output nodes (A).

        Returns
        -------
        ndarray, shape (B, n_nodes - n_sources)
            Zero at equilibrium. For ideal diodes the diode current is not included: the
            residual is then minus the current through the clamping diode, so it is <= 0 at a
            node clamped high (the diode sinks current), >= 0 at a node clamped low, and zero
            at unclamped nodes.
        """
        net = self.network
        v = np.asarray(node_voltages, dtype=float)
        drops = net.drops(v)  # (B, n_devices): a*V_row - V_col
        current = drops * self.conductances  # flows row line -> column node
        leaving = np.zeros_like(v)
        np.add.at(leaving.T, net.device_cols, -current.T)
        # A row behind an amplifier: its node gives up current/gain through the CCCS.
        free_rows = net.device_rows >= net.n_sources
        np.add.at(
            leaving.T,
            net.device_rows[free_rows],
            (current[:, free_rows] / net.device_row_gain[free_rows]).T,
        )
        leaving[:, net.output_nodes] -= nudges
        if net.spec.diode.model == "shockley":
            leaving[:, net.hidden_nodes] += self.diode_currents(v[:, net.hidden_nodes])
        return leaving[:, net.n_sources :]

    # --- element view ---------------------------------------------------------------------
    def elements(self) -> Iterator[Element]:
        """Every element of the circuit, with node names ``n<index>`` (ground is ``0``)."""
        net = self.network
        u = net.source_voltages_template
        for i, node in enumerate(net.input_nodes):
            yield VoltageSource(f"vin{i}", f"n{node}", 0.0, "input", i)
        for t, nodes in enumerate(net.bias_nodes):
            for node in nodes:
                yield VoltageSource(f"vb{node}", f"n{node}", float(u[node]), "bias", t)
        for layer in net.layers:
            if layer.kind != "hidden":
                continue
            lo, hi = f"clo{layer.index}", f"chi{layer.index}"
            yield VoltageSource(f"vclo{layer.index}", lo, net.spec.diode.v_low, "clamp", 0)
            yield VoltageSource(f"vchi{layer.index}", hi, net.spec.diode.v_high, "clamp", 1)
            for node in layer.nodes:
                yield Diode(f"dhi{node}", f"n{node}", hi)
                yield Diode(f"dlo{node}", lo, f"n{node}")
                if layer.amplified:
                    gain = float(net.spec.amplifier_gain or 1.0)
                    yield Amplifier(f"amp{node}", f"n{node}", f"a{node}", gain)
        amplified = {int(n) for layer in net.layers if layer.amplified for n in layer.nodes}
        for tile in net.tiles:
            for r, row in enumerate(tile.row_nodes):
                line = f"a{row}" if int(row) in amplified else f"n{row}"
                for c, col in enumerate(tile.col_nodes):
                    dev = tile.first_device + r * tile.shape[1] + c
                    yield Resistor(f"r{dev}", line, f"n{col}", float(self.conductances[dev]), dev)
        for k, node in enumerate(net.output_nodes):
            yield CurrentSource(f"inudge{k}", f"n{node}", k)
