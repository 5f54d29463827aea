"""The network: a validated spec (pydantic) and the layered resistive network it implies.

Kendall et al. (2020) style: every input feature x_i is entered twice, as voltage sources
``+g*x_i`` and ``-g*x_i`` (g the input gain), so that positive conductances give signed
weights. Each crossbar tile joins the nodes of one layer (plus the tile's bias sources) to the
nodes of the next. Hidden nodes are clamped by two diodes to bias sources ``v_low`` and
``v_high``. Outputs come in differential pairs, read as ``V+ - V-``. Optional bidirectional
amplifiers of gain A sit between a hidden layer and the next tile: a VCVS drives the tile with
``A*V`` and a CCCS feeds ``I/A`` back into the hidden node.

Node order (the columns of every node-voltage array): input sources (+x then -x), then for
each tile its bias sources, then the free layers (hidden layers, then the output layer, whose
nodes are ``[+0, -0, +1, -1, ...]``). Amplifier outputs are not listed: they are ``A*V`` of
the hidden node they copy.

Device ids run tile by tile, row-major within a tile: rows are the tile's driving nodes
(previous layer, then the tile's bias sources), columns the next layer's nodes.

Energy weights (Notes)
----------------------
With amplifiers the circuit's KCL is the gradient of the energy
``E = sum_t w_t * [sum_devices G (a*V_row - V_col)^2 / 2 + diode co-content]`` with
``w_t = A**(-2*m_t)``, ``m_t`` the number of amplifiers upstream of tile t, ``a`` the gain
applied to the tile's driving nodes (A or 1). The physical current balance at a node of a
layer fed by tile t equals ``dE/dV / w_t``. EqProp needs these weights to turn measured
drops into gradients; ``Network.device_weights`` and ``Network.layer_weights`` hold them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

from hil.errors import ConfigError
from hil.schema import MAX_DEVICES, MAX_LAYER, Schema
from hil.vocabulary import BOLTZMANN, ELEMENTARY_CHARGE, ZERO_CELSIUS, DiodeModel


class DiodeSpec(Schema):
    """The two clamping diodes on every hidden node.

    ``ideal`` diodes are a hard clamp of the node to ``[v_low, v_high]`` (Scellier 2024);
    ``shockley`` diodes follow ``I = I_s (exp(V_d / (n V_T)) - 1)`` with a conductance
    ``gmin`` in parallel with each junction, as SPICE models them. The upper diode runs
    from the node to ``v_high``, the lower from ``v_low`` to the node; Shockley rails may
    cross (``v_low > v_high``) to bring the junctions' knees in to where the clamp should
    act.
    """

    model: DiodeModel = "ideal"
    v_low: float = Field(-1.0, ge=-1e3, le=1e3, description="bias source of the lower clamp (V)")
    v_high: float = Field(1.0, ge=-1e3, le=1e3, description="bias source of the upper clamp (V)")
    saturation_current: float = Field(
        1e-14, ge=1e-28, le=1.0, description="I_s (A), >= 1e-28 as in SPICE"
    )
    ideality: float = Field(1.0, gt=0, le=100, description="emission coefficient n")
    temperature_c: float = Field(27.0, gt=-273.15, le=1000, description="junction temperature (C)")
    gmin: float = Field(1e-12, ge=0, le=1.0, description="conductance across each junction (S)")

    @model_validator(mode="after")
    def _clamp_order(self) -> DiodeSpec:
        # An ideal clamp holds the node inside [v_low, v_high], so that interval must
        # exist. A Shockley junction conducts only past its knee (~0.4 V for a 1N4148), so
        # its rails may cross (v_low > v_high) to put the knees where the clamp should
        # bite; the two junctions then share a small standing current (docs/learning.md).
        if self.model == "ideal" and self.v_low >= self.v_high:
            raise ValueError(
                f"v_low ({self.v_low} V) must be below v_high ({self.v_high} V) for ideal "
                "diodes (Shockley diodes may cross their rails)"
            )
        if self.model == "shockley" and self.v_low == self.v_high:
            raise ValueError(
                f"v_low and v_high are both {self.v_low} V: the two clamps would cancel"
            )
        return self

    @property
    def thermal_voltage(self) -> float:
        """``n * k T / q`` in volts."""
        kelvin = self.temperature_c + ZERO_CELSIUS
        return self.ideality * BOLTZMANN * kelvin / ELEMENTARY_CHARGE


class NetworkSpec(Schema):
    """What a user writes to describe a network; validated before anything runs.

    Attributes
    ----------
    inputs : int
        Number of input features; each becomes two voltage sources (+g*x, -g*x).
    hidden : list of int
        Sizes of the hidden layers (diode-clamped nodes).
    outputs : int
        Number of classes; each is a differential pair of output nodes.
    input_gain : float
        Volts per unit of input feature.
    bias_voltages : list of float
        Voltages of the bias sources that every tile gets as extra rows (V).
    g_min, g_max : float
        Bounds of every crossbar conductance (S).
    g_init : ``"uniform"`` or float
        Initial conductances: uniform in ``[g_min, g_max]`` or a fixed fraction of the range
        drawn around its middle (``g_min + frac*(g_max-g_min)`` +- 50 %).
    amplifier_gain : float or None
        Gain A of the bidirectional amplifiers after each hidden layer; None for none.
    diode : DiodeSpec
    """

    inputs: int = Field(gt=0, le=MAX_LAYER)
    hidden: list[Annotated[int, Field(gt=0, le=MAX_LAYER)]] = Field(
        default_factory=lambda: [32], max_length=16
    )
    outputs: int = Field(gt=0, le=MAX_LAYER)
    input_gain: float = Field(1.0, gt=0, le=1e3)
    bias_voltages: list[Annotated[float, Field(ge=-1e3, le=1e3)]] = Field(
        default_factory=lambda: [1.0, -1.0], max_length=16
    )
    g_min: float = Field(1e-7, gt=0, le=1.0)
    g_max: float = Field(1e-5, gt=0, le=1.0)
    g_init: Literal["uniform"] | float = "uniform"
    amplifier_gain: float | None = Field(None, gt=0, le=1e6)
    diode: DiodeSpec = Field(default_factory=DiodeSpec)

    @model_validator(mode="after")
    def _check(self) -> NetworkSpec:
        if self.g_min >= self.g_max:
            raise ValueError(f"g_min ({self.g_min} S) must be below g_max ({self.g_max} S)")
        if any(h <= 0 for h in self.hidden):
            raise ValueError(f"hidden layer sizes must be positive, got {self.hidden}")
        if isinstance(self.g_init, float) and not 0.0 < self.g_init < 1.0:
            raise ValueError(f"g_init fraction must be in (0, 1), got {self.g_init}")
        n_bias = len(self.bias_voltages)
        rows = [2 * self.inputs, *self.hidden]
        cols = [*self.hidden, 2 * self.outputs]
        devices = sum((r + n_bias) * c for r, c in zip(rows, cols, strict=True))
        if devices > MAX_DEVICES:
            raise ValueError(
                f"inputs/hidden/outputs make {devices:,} devices, more than the "
                f"{MAX_DEVICES:,} a bench can hold in memory"
            )
        return self


@dataclass(frozen=True)
class Tile:
    """One crossbar: rows are driving nodes, columns the next layer's nodes.

    Attributes
    ----------
    index : int
    row_nodes : ndarray of int, shape (rows,)
        Node indices driving the rows (previous layer then the tile's bias sources).
    col_nodes : ndarray of int, shape (cols,)
        Node indices of the next layer.
    row_gain : ndarray of float, shape (rows,)
        Voltage gain between a row's node and the crossbar line (A behind an amplifier, else 1).
    weight : float
        Energy weight ``w_t`` of the tile (see module Notes).
    first_device : int
        Device id of element (0, 0).
    """

    index: int
    row_nodes: np.ndarray
    col_nodes: np.ndarray
    row_gain: np.ndarray
    weight: float
    first_device: int

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the tile."""
        return (len(self.row_nodes), len(self.col_nodes))

    @property
    def size(self) -> int:
        """Devices on the tile."""
        return len(self.row_nodes) * len(self.col_nodes)

    @property
    def devices(self) -> slice:
        """The tile's device ids, as a slice of the network's."""
        return slice(self.first_device, self.first_device + self.size)


@dataclass(frozen=True)
class Layer:
    """A layer of free nodes (hidden or output) fed by one tile."""

    index: int
    nodes: np.ndarray  # node indices, shape (n,)
    kind: Literal["hidden", "output"]
    weight: float  # energy weight of the feeding tile
    amplified: bool  # whether an amplifier copies this layer into the next tile


class Network:
    """The layered resistive network implied by a :class:`NetworkSpec`.

    Holds structure only (nodes, tiles, devices, bounds, encodings); conductances are the
    state of a bench.
    """

    def __init__(self, spec: NetworkSpec) -> None:
        self.spec = spec
        self.n_inputs = spec.inputs
        self.n_classes = spec.outputs
        self._build()

    # --- construction -------------------------------------------------------------------
    def _build(self) -> None:
        spec = self.spec
        n_bias = len(spec.bias_voltages)
        n_tiles = len(spec.hidden) + 1
        self.input_nodes = np.arange(2 * spec.inputs)
        start = 2 * spec.inputs
        self.bias_nodes = []
        for _ in range(n_tiles):
            self.bias_nodes.append(np.arange(start, start + n_bias))
            start += n_bias
        self.n_sources = start
        sizes = [*spec.hidden, 2 * spec.outputs]
        self.layers: list[Layer] = []
        self.tiles: list[Tile] = []
        gain = spec.amplifier_gain
        weight, prev_nodes, prev_gain, first_device = 1.0, self.input_nodes, 1.0, 0
        for t, size in enumerate(sizes):
            nodes = np.arange(start, start + size)
            start += size
            row_nodes = np.concatenate([prev_nodes, self.bias_nodes[t]])
            row_gain = np.concatenate([np.full(len(prev_nodes), prev_gain), np.ones(n_bias)])
            tile = Tile(t, row_nodes, nodes, row_gain, weight, first_device)
            self.tiles.append(tile)
            first_device += tile.size
            is_hidden = t < len(spec.hidden)
            amplified = is_hidden and gain is not None
            self.layers.append(
                Layer(t, nodes, "hidden" if is_hidden else "output", weight, amplified)
            )
            if amplified and gain is not None:
                weight /= gain**2
                prev_nodes, prev_gain = nodes, gain
            else:
                prev_nodes, prev_gain = nodes, 1.0
        self.n_nodes = start
        self.n_devices = first_device
        self.output_nodes = self.layers[-1].nodes
        hidden = [lay.nodes for lay in self.layers[:-1]]
        self.hidden_nodes = np.concatenate(hidden).astype(int) if hidden else np.zeros(0, int)

    # --- devices ------------------------------------------------------------------------
    @property
    def g_bounds(self) -> tuple[float, float]:
        """``(g_min, g_max)`` in siemens."""
        return (self.spec.g_min, self.spec.g_max)

    @cached_property
    def device_weights(self) -> np.ndarray:
        """Energy weight ``w_t`` of every device, shape (n_devices,)."""
        return np.concatenate([np.full(t.size, t.weight) for t in self.tiles])

    @cached_property
    def device_rows(self) -> np.ndarray:
        """Driving node of every device, shape (n_devices,)."""
        return np.concatenate([np.repeat(t.row_nodes, t.shape[1]) for t in self.tiles])

    @cached_property
    def device_cols(self) -> np.ndarray:
        """Driven (column) node of every device, shape (n_devices,)."""
        return np.concatenate([np.tile(t.col_nodes, t.shape[0]) for t in self.tiles])

    @cached_property
    def device_row_gain(self) -> np.ndarray:
        """Gain between each device's row node and its crossbar line, shape (n_devices,)."""
        return np.concatenate([np.repeat(t.row_gain, t.shape[1]) for t in self.tiles])

    def device_address(self, device_id: int) -> tuple[int, int, int]:
        """``(tile, row, column)`` of a device id."""
        if not 0 <= device_id < self.n_devices:
            raise ConfigError(f"device id must be in [0, {self.n_devices}), got {device_id}")
        for tile in self.tiles:
            if device_id < tile.first_device + tile.size:
                row, col = divmod(device_id - tile.first_device, tile.shape[1])
                return (tile.index, row, col)
        raise AssertionError("unreachable")

    def device_id(self, tile: int, row: int, col: int) -> int:
        """Device id of ``(tile, row, column)``."""
        t = self.tiles[tile]
        if not (0 <= row < t.shape[0] and 0 <= col < t.shape[1]):
            raise ConfigError(f"(row, col) must be within {t.shape} for tile {tile}")
        return t.first_device + row * t.shape[1] + col

    def tile_view(self, conductances: np.ndarray, tile: int) -> np.ndarray:
        """The (rows, cols) view of one tile inside a flat conductance vector."""
        t = self.tiles[tile]
        return conductances[..., t.devices].reshape(*conductances.shape[:-1], *t.shape)

    def initial_conductances(self, rng: np.random.Generator) -> np.ndarray:
        """Draw starting conductances (S), shape (n_devices,)."""
        lo, hi = self.g_bounds
        if self.spec.g_init == "uniform":
            return rng.uniform(lo, hi, self.n_devices)
        mid = lo + self.spec.g_init * (hi - lo)
        spread = 0.5 * min(mid - lo, hi - mid)
        return rng.uniform(mid - spread, mid + spread, self.n_devices)

    # --- encodings ----------------------------------------------------------------------
    @property
    def n_input_sources(self) -> int:
        """Input voltage sources (``+x`` and ``-x``: twice the inputs)."""
        return len(self.input_nodes)

    @property
    def n_output_nodes(self) -> int:
        """Output nodes (two per class)."""
        return len(self.output_nodes)

    def encode_inputs(self, x: np.ndarray) -> np.ndarray:
        """Features (B, inputs) -> input source voltages (B, 2*inputs): ``[+g x, -g x]``."""
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ConfigError(
                f"inputs must have shape (batch, {self.n_inputs}), got {tuple(x.shape)}"
            )
        v = self.spec.input_gain * x
        return np.concatenate([v, -v], axis=1)

    @cached_property
    def source_voltages_template(self) -> np.ndarray:
        """Voltages of all source nodes with inputs at 0 V, shape (n_sources,)."""
        v = np.zeros(self.n_sources)
        for nodes in self.bias_nodes:
            v[nodes] = self.spec.bias_voltages
        return v

    def outputs(self, node_voltages: np.ndarray) -> np.ndarray:
        """Differential outputs ``V+ - V-`` (B, classes) from node voltages (B, n_nodes)."""
        out = node_voltages[..., self.output_nodes]
        return out[..., 0::2] - out[..., 1::2]

    def pair_currents(self, pair_currents: np.ndarray) -> np.ndarray:
        """Currents per output pair (B, classes) -> per output node (B, 2*classes).

        A current ``I`` on a pair is injected as ``+I`` into the + node and ``-I`` into the
        - node.
        """
        pair_currents = np.asarray(pair_currents, dtype=float)
        out = np.empty((*pair_currents.shape[:-1], 2 * pair_currents.shape[-1]))
        out[..., 0::2] = pair_currents
        out[..., 1::2] = -pair_currents
        return out

    def drops(self, node_voltages: np.ndarray) -> np.ndarray:
        """Voltage across every device (B, n_devices) from node voltages (B, n_nodes).

        The drop is ``a * V_row - V_col``: the crossbar line of a row behind an amplifier
        sits at ``A`` times its hidden node's voltage.
        """
        v = np.asarray(node_voltages, dtype=float)
        out = np.empty((*v.shape[:-1], self.n_devices))
        # Tile by tile, broadcast (rows, 1) - (1, cols): the same products and differences as
        # gathering both ends of every device, without two (B, n_devices) index gathers.
        for tile in self.tiles:
            rows = tile.row_gain * v[..., tile.row_nodes]
            block = out[..., tile.devices].reshape(*v.shape[:-1], *tile.shape)
            np.subtract(rows[..., :, None], v[..., None, tile.col_nodes], out=block)
        return out

    @property
    def output_weight(self) -> float:
        """Energy weight of the output layer."""
        return self.layers[-1].weight

    @property
    def nominal_conductance(self) -> float:
        """Mean of the initial conductance distribution (S): the middle of the range, or
        ``g_min + g_init * (g_max - g_min)`` for a fixed fraction."""
        lo, hi = self.g_bounds
        frac = 0.5 if self.spec.g_init == "uniform" else self.spec.g_init
        return lo + frac * (hi - lo)

    @property
    def output_conductance(self) -> float:
        """Nominal conductance from one output node to the lines that drive it (S).

        The rows of the last tile (previous layer's lines and the tile's bias sources) times
        :attr:`nominal_conductance`: the conductance a current injected into an output node
        sees while the lines hold (docs/learning.md).
        """
        return self.tiles[-1].shape[0] * self.nominal_conductance

    def describe(self) -> str:
        """One line: layer sizes, devices, diode model, amplifiers."""
        sizes = "-".join(str(s) for s in [2 * self.n_inputs, *self.spec.hidden, self.n_classes])
        amp = f", amplifiers A={self.spec.amplifier_gain:g}" if self.spec.amplifier_gain else ""
        return f"{sizes} network, {self.n_devices} devices, {self.spec.diode.model} diodes{amp}"
