"""The API's contract: request and response models (pydantic).

Requests forbid unknown fields and refuse NaN and infinity; every array has a bound on its
length. Units are in the field names or descriptions (V, A, S, s).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat

from hil.bench import SafetyLimits
from hil.store import RunStatus

#: Longest list of numbers one request field may hold.
MAX_ARRAY = 100_000
#: Most samples one settle may hold, and values per sample (2*inputs, 2*classes).
MAX_BATCH = 256
MAX_SAMPLE = 8192

HolderName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]
Sample = Annotated[list[FiniteFloat], Field(max_length=MAX_SAMPLE)]
DeviceId = Annotated[int, Field(ge=0, le=2**31 - 1)]
PulseCount = Annotated[int, Field(ge=-(10**9), le=10**9)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# --- errors and health --------------------------------------------------------------------
class ErrorOut(BaseModel):
    """An error: the message, the error's class and, where one is to blame, the field.

    Request validation (422) answers FastAPI's list of ``{loc, msg, type}`` as ``detail``
    instead, without ``error`` and ``field``.
    """

    detail: str | list[dict[str, Any]]
    error: str | None = None
    field: str | None = None


class HealthOut(BaseModel):
    """The server is up (``GET /health`` needs no token)."""

    status: Literal["ok"] = "ok"
    benches: int
    version: str


# --- benches ------------------------------------------------------------------------------
class TileOut(BaseModel):
    """One crossbar tile: ``rows`` driving lines by ``cols`` driven nodes."""

    index: int
    rows: int
    cols: int
    first_device: int


class TopologyOut(BaseModel):
    """The network a bench realises."""

    description: str
    sizes: list[int] = Field(
        description="layer sizes: input sources (2 per feature), hidden layers, classes"
    )
    n_input_sources: int
    n_output_nodes: int
    n_nodes: int
    n_devices: int
    tiles: list[TileOut]


class LeaseInfo(BaseModel):
    """Who holds a bench, and until when."""

    holder: str
    run: str | None = Field(None, description="the run holding the bench, if a run does")
    expires_in_s: float | None = Field(None, description="None for a run's lease")


class PulseSummary(BaseModel):
    """The bench's pulse counters (every pulse ever delivered, per device)."""

    total: int
    max_per_device: int
    devices_pulsed: int
    per_tile: list[int]


class BenchOut(BaseModel):
    """A bench: what it is, its limits, whether it is armed, who holds it."""

    id: str
    kind: Literal["simulated", "lab"]
    status: Literal["armed", "safe", "unconfirmed"] = Field(
        description="armed: an operation drove it since its last safe state; unconfirmed: "
        "its last safe state could not be confirmed (see `unconfirmed`)"
    )
    estop: bool = Field(description="the emergency stop holds (a new lease or run clears it)")
    estop_by: str | None = None
    unconfirmed: list[str] = Field(default_factory=list)
    lease: LeaseInfo | None
    run: str | None
    limits: SafetyLimits
    topology: TopologyOut
    pulses: PulseSummary


# --- leases ---------------------------------------------------------------------------------
class LeaseRequest(_Request):
    """Ask for a bench's lease."""

    holder: HolderName = Field(description="who holds it: shown to everyone else")
    ttl_s: FiniteFloat | None = Field(
        None, gt=0, le=86400, description="time to live (s); default and maximum: the server's"
    )


class RenewRequest(_Request):
    """Extend a lease."""

    ttl_s: FiniteFloat | None = Field(None, gt=0, le=86400)


class LeaseOut(BaseModel):
    """A lease granted: send ``lease_token`` back as ``X-Lease-Token``."""

    bench: str
    holder: str
    lease_token: str
    ttl_s: float
    expires_in_s: float


class LeaseEnded(BaseModel):
    """A lease ended; the bench went to its safe state."""

    bench: str
    released: str | None = Field(description="the holder whose lease ended (None: none held)")
    confirmed: bool = Field(description="the bench confirmed its safe state")


# --- manual operations ----------------------------------------------------------------------
class SettleRequest(_Request):
    """Settle a batch: input source voltages and optional output nudge currents."""

    inputs: list[Sample] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="input source voltages (V), shape (batch, 2*inputs): +x then -x",
    )
    nudges: list[Sample] | None = Field(
        None,
        max_length=MAX_BATCH,
        description="output nudge currents (A), shape (batch, 2*classes); none: free phase",
    )


class SettleOut(BaseModel):
    """What the settle measured, with the status of the readings."""

    node_voltages: list[list[float]] = Field(description="(batch, n_nodes) V")
    drops: list[list[float]] = Field(description="(batch, n_devices) V across every device")
    outputs: list[list[float]] = Field(description="(batch, classes) V+ - V-")
    compliance: list[list[int]] = Field(
        description="per sample: the driven nodes whose channel was in compliance"
    )
    overflow: list[list[int]] = Field(
        description="per sample: the measured nodes whose converter saturated"
    )
    flagged: list[bool] = Field(description="per sample: any reading in compliance or overflow")


class PulsesRequest(_Request):
    """Programming pulses: counts per device (positive potentiates, negative depresses)."""

    device_ids: list[DeviceId] = Field(max_length=MAX_ARRAY)
    counts: list[PulseCount] = Field(max_length=MAX_ARRAY)
    amplitude_v: FiniteFloat = Field(description="pulse amplitude (V)")
    width_s: FiniteFloat = Field(description="pulse width (s)")


class PulsesOut(BaseModel):
    """What the bench applied."""

    device_ids: list[int]
    applied: list[int]
    refused: list[int]
    notes: list[str]
    total_pulses: int


class TileConductances(BaseModel):
    """One tile's conductances (S), ``rows`` by ``cols``."""

    tile: int
    rows: int
    cols: int
    conductances: list[list[float]]


class ConductancesOut(BaseModel):
    """Conductances per tile, and where they come from."""

    source: Literal["bench", "checkpoint"]
    bench: str | None = None
    run: str | None = None
    epoch: int | None = Field(None, description="epochs done at the checkpoint")
    step: int | None = Field(None, description="steps done in the epoch at the checkpoint")
    tiles: list[TileConductances]


class EStopOut(BaseModel):
    """The emergency stop's outcome."""

    bench: str
    confirmed: bool
    unconfirmed: list[str]
    message: str
    run_stopped: str | None = Field(description="the run told to stop (ends `stopped`)")
    lease_revoked: str | None = Field(description="the holder whose lease the stop ended")


# --- runs -----------------------------------------------------------------------------------
class RunRequest(_Request):
    """Start a run on a bench."""

    bench: str = Field(max_length=200, description="the bench id")
    config: (
        Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^\x00-\x1f\x7f]+$")]
        | dict[str, Any]
    ) = Field(
        description="a bench id, a shipped config's name, a config file under the server's "
        "config folder, or an inline config (missing network/bench: the bench's)"
    )
    epochs: int | None = Field(None, ge=1, le=100_000, description="override training.epochs")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="override training.seed")


class ResumeRequest(_Request):
    """Continue a stopped or interrupted run."""

    bench: str | None = Field(None, max_length=200, description="default: the run's bench")
    epochs: int | None = Field(None, ge=1, le=100_000, description="extend training.epochs")


class RunOut(BaseModel):
    """A run's record."""

    id: str
    name: str
    status: RunStatus
    bench: str | None = Field(description="the bench this server trains it on (None: unknown)")
    bench_kind: str
    active: bool = Field(description="this server is training it now")
    seed: int
    epochs: int | None = Field(description="training.epochs")
    epochs_done: int
    created_at: float
    started_at: float | None
    ended_at: float | None
    error: str | None
    git_revision: str | None


class RunPage(BaseModel):
    """A page of runs, newest first."""

    runs: list[RunOut]
    total: int
    limit: int
    offset: int


class EpochOut(BaseModel):
    """One finished epoch (losses in V^2, accuracies in [0, 1])."""

    model_config = ConfigDict(extra="allow")

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    pulses: int
    learning_rate: float
    seconds: float


class PulseCountsOut(BaseModel):
    """A run's pulse counters at its last checkpoint (pulses per device, by device id)."""

    run: str
    total: int
    n_devices: int
    counts: list[int]
    endurance: int | None = Field(
        None,
        description="selected pulses a device takes before it wears out, from the run's "
        "device model config (None: no limit configured)",
    )


class ConfigsOut(BaseModel):
    """The configs a run may name besides the server's benches and files under its config
    folder."""

    shipped: list[str] = Field(description="names of the configs shipped with the package")
    benches: list[str] = Field(description="this server's benches (each names its own config)")


# --- sweeps ---------------------------------------------------------------------------------
GridField = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")
]
GridValue = Annotated[str, Field(max_length=200)] | int | FiniteFloat | bool | None
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


class SweepRequest(_Request):
    """Start a sweep: one simulated run per cell of the grid and the seeds, on a Dask
    LocalCluster of the server."""

    config: (
        Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^\x00-\x1f\x7f]+$")]
        | dict[str, Any]
    ) = Field(
        description="a bench id, a shipped config's name, a config file under the server's "
        "config folder, or an inline config (a whole one); its bench must be simulated"
    )
    grid: dict[GridField, Annotated[list[GridValue], Field(min_length=1, max_length=100)]] = Field(
        max_length=16,
        description="swept config fields (dotted paths) and their values, in grid order",
    )
    seeds: (
        Annotated[list[Seed], Field(min_length=1, max_length=1000)]
        | Annotated[str, Field(max_length=200, pattern=r"^[0-9][0-9, -]*$")]
    ) = Field([0], description="training seeds: a list, or `0-4`, `0,2,5`")
    workers: int = Field(2, ge=1, le=64, description="worker processes of the LocalCluster")


class SweepCellOut(BaseModel):
    """One cell of a sweep and its outcome (its run is ``run_id`` under ``/runs``)."""

    cell: int
    params: dict[str, Any] = Field(description="the cell's grid values")
    seed: int
    run_id: str
    status: Literal["pending", "running", "finished", "failed"]
    test_accuracy: float | None = Field(description="after the last epoch, in [0, 1]")
    seconds: float | None = Field(description="training time on its worker (s)")
    worker: str | None
    error: str | None


class SweepOut(BaseModel):
    """A sweep's record, the count of its cells by status and (one sweep) its cells."""

    id: str
    name: str
    status: Literal["queued", "running", "finished", "failed", "interrupted"]
    active: bool = Field(description="this server runs it now")
    grid: list[list[Any]] = Field(description="[field, [values]] in grid order")
    seeds: list[int]
    counts: dict[str, int] = Field(description="cells per status")
    created_at: float
    started_at: float | None
    ended_at: float | None
    error: str | None
    cells: list[SweepCellOut] | None = Field(None, description="every cell (GET one sweep)")


class SweepPage(BaseModel):
    """A page of sweeps, newest first (without their cells)."""

    sweeps: list[SweepOut]
    limit: int
    offset: int
