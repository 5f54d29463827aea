"""What the routes do: describe a bench, settle, pulse, read conductances, show runs.

Every request is checked with the bench's own checks (:func:`hil.bench.check_settle_args`,
:meth:`hil.bench.SafetyLimits.check_pulse`) before the bench sees it, one field at a time so
that a 422 names the field; the bench then checks again, as it always does. A refused request
applies nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from hil.api.errors import FieldError, UnknownResource
from hil.api.guard import GuardedBench
from hil.api.leases import LeaseKeeper
from hil.api.pool import BenchSlot, EStopOutcome
from hil.api.schemas import (
    BenchOut,
    ConductancesOut,
    EStopOut,
    LeaseInfo,
    PulseCountsOut,
    PulsesOut,
    PulsesRequest,
    PulseSummary,
    RunOut,
    SettleOut,
    SettleRequest,
    TileConductances,
    TileOut,
    TopologyOut,
)
from hil.api.training import RunManager
from hil.bench import PulseRequest, check_settle_args
from hil.errors import InUseError, SafetyError
from hil.network import Network, NetworkSpec
from hil.run_files import RunDirectory
from hil.store import RunRecord, RunStore


@contextmanager
def blame(field: str) -> Iterator[None]:
    """Turn a SafetyError raised inside into a :class:`FieldError` naming ``field``."""
    try:
        yield
    except FieldError:
        raise
    except SafetyError as exc:
        raise FieldError(field, str(exc)) from None


# --- describing ------------------------------------------------------------------------
def topology(network: Network) -> TopologyOut:
    """The network's layers, nodes, devices and tiles."""
    spec = network.spec
    return TopologyOut(
        description=network.describe(),
        sizes=[network.n_input_sources, *spec.hidden, network.n_classes],
        n_input_sources=network.n_input_sources,
        n_output_nodes=network.n_output_nodes,
        n_nodes=network.n_nodes,
        n_devices=network.n_devices,
        tiles=[
            TileOut(index=t.index, rows=t.shape[0], cols=t.shape[1], first_device=t.first_device)
            for t in network.tiles
        ],
    )


def pulse_summary(network: Network, counts: np.ndarray) -> PulseSummary:
    """Totals of per-device pulse counters."""
    counts = np.abs(np.asarray(counts, dtype=np.int64))
    return PulseSummary(
        total=int(counts.sum()),
        max_per_device=int(counts.max(initial=0)),
        devices_pulsed=int(np.count_nonzero(counts)),
        per_tile=[int(counts[t.devices].sum()) for t in network.tiles] if counts.size else [],
    )


def lease_info(leases: LeaseKeeper) -> LeaseInfo | None:
    """The lease in force, as the API shows it (never its token)."""
    lease = leases.current()
    if lease is None:
        return None
    return LeaseInfo(holder=lease.holder, run=lease.run_id, expires_in_s=leases.remaining_s(lease))


def describe(slot: BenchSlot) -> BenchOut:
    """``GET /benches/{id}``: reads in-memory state only, so it never waits for the bench."""
    bench = slot.guard
    report = bench.last_safe_state
    unconfirmed = list(report.unconfirmed) if report is not None else []
    status = "armed" if bench.armed else ("unconfirmed" if unconfirmed else "safe")
    return BenchOut(
        id=slot.id,
        kind=slot.config.bench.kind,
        status=status,
        estop=bench.tripped,
        estop_by=bench.stopped_by or None,
        unconfirmed=unconfirmed,
        lease=lease_info(slot.leases),
        run=slot.run_id,
        limits=bench.limits,
        topology=topology(bench.network),
        pulses=pulse_summary(bench.network, bench.pulse_counts),
    )


# --- operating ---------------------------------------------------------------------------
def settle(bench: GuardedBench, request: SettleRequest, max_batch: int) -> SettleOut:
    """Check each field, then settle; the Measurement as lists."""
    if len(request.inputs) > max_batch:
        raise FieldError(
            "inputs",
            f"inputs hold {len(request.inputs)} samples, more than this server's "
            f"max_settle_batch of {max_batch}; nothing was applied",
        )
    with blame("inputs"):
        inputs, _ = check_settle_args(bench.network, bench.limits, request.inputs)
    nudges = None
    if request.nudges is not None:
        with blame("nudges"):
            _, nudges = check_settle_args(bench.network, bench.limits, inputs, request.nudges)
    m = bench.settle(inputs, nudges)
    return SettleOut(
        node_voltages=m.node_voltages.tolist(),
        drops=m.drops.tolist(),
        outputs=m.outputs.tolist(),
        compliance=[np.flatnonzero(row).tolist() for row in m.compliance],
        overflow=[np.flatnonzero(row).tolist() for row in m.overflow],
        flagged=m.flagged.tolist(),
    )


def pulse(bench: GuardedBench, request: PulsesRequest, max_devices: int) -> PulsesOut:
    """Check each field (devices, amplitude, width, counts), then pulse."""
    if len(request.device_ids) > max_devices:
        raise FieldError(
            "device_ids",
            f"{len(request.device_ids)} devices, more than this server's "
            f"max_pulse_devices of {max_devices}; nothing was applied",
        )
    none = np.zeros(0, dtype=np.int64)
    width_lo = bench.limits.pulse_width[0]
    with blame("counts" if len(request.counts) != len(request.device_ids) else "device_ids"):
        pulses = PulseRequest(
            np.asarray(request.device_ids, dtype=np.int64),
            np.asarray(request.counts, dtype=np.int64),
            request.amplitude_v,
            request.width_s,
        )
    with blame("device_ids"):
        pulses.check_devices(bench.network.n_devices)
    # check_pulse checks amplitude, width, then counts: asked one at a time, it names the field
    with blame("amplitude_v"):
        bench.limits.check_pulse(PulseRequest(none, none, request.amplitude_v, width_lo))
    with blame("width_s"):
        bench.limits.check_pulse(PulseRequest(none, none, request.amplitude_v, request.width_s))
    with blame("counts"):
        bench.limits.check_pulse(pulses)
    report = bench.pulse(pulses)
    return PulsesOut(
        device_ids=np.asarray(report.device_ids).tolist(),
        applied=np.asarray(report.applied).tolist(),
        refused=np.asarray(report.refused).tolist(),
        notes=list(report.notes),
        total_pulses=report.total_pulses,
    )


def tiles(network: Network, conductances: np.ndarray) -> list[TileConductances]:
    """A flat conductance vector (n_devices,) split into its tiles."""
    g = np.asarray(conductances, dtype=float)
    return [
        TileConductances(
            tile=t.index,
            rows=t.shape[0],
            cols=t.shape[1],
            conductances=network.tile_view(g, t.index).tolist(),
        )
        for t in network.tiles
    ]


def bench_conductances(
    slot: BenchSlot, bench: GuardedBench, run_id: str | None = None
) -> ConductancesOut:
    """Read every conductance of the bench (a read at a small voltage)."""
    g = bench.read_conductances()
    return ConductancesOut(source="bench", bench=slot.id, run=run_id, tiles=tiles(bench.network, g))


def estop_out(outcome: EStopOutcome) -> EStopOut:
    """The emergency stop's outcome as the API shows it."""
    return EStopOut(
        bench=outcome.bench_id,
        confirmed=outcome.report.confirmed,
        unconfirmed=list(outcome.report.unconfirmed),
        message=outcome.report.words(),
        run_stopped=outcome.run_id,
        lease_revoked=outcome.revoked,
    )


def run_conductances(runs: RunManager, reads: RunStore, run_id: str) -> ConductancesOut:
    """A run's latest conductances: from its checkpoint when that holds them, else read from
    its bench (only while no run trains on it: a read would disturb the run's bench)."""
    record = runs.record(run_id, reads)
    network = Network(NetworkSpec.model_validate(record.config["network"]))
    bench_id = runs.bench_of(run_id, reads)
    if reads.checkpoints(run_id):
        arrays = RunDirectory(reads.run_dir(run_id)).read_checkpoint()
        if "bench.conductances" in arrays:
            return ConductancesOut(
                source="checkpoint",
                bench=bench_id,
                run=run_id,
                epoch=int(arrays["epoch"]),
                step=int(arrays["progress.step"]) if "progress.step" in arrays else 0,
                tiles=tiles(network, arrays["bench.conductances"]),
            )
    if bench_id is None:
        raise UnknownResource(
            f"run {run_id} has no checkpoint holding conductances, and its bench is not one "
            "of this server's"
        )
    slot = runs.pool.get(bench_id)
    if slot.run_id == run_id:
        raise InUseError(
            f"run {run_id} is training on bench {bench_id} and has no checkpoint with "
            "conductances yet (one is written after every epoch); nothing was read"
        )
    with slot.idle() as bench:
        return bench_conductances(slot, bench, run_id)


def run_out(runs: RunManager, reads: RunStore, record: RunRecord) -> RunOut:
    """A run's record as the API shows it (with its bench and whether it trains here)."""
    epochs = record.config.get("training", {}).get("epochs")
    return RunOut(
        **record.as_dict(),
        bench=runs.bench_of(record.id, reads),
        active=runs.is_active(record.id),
        epochs=epochs if isinstance(epochs, int) else None,
    )


def pulse_counts_out(runs: RunManager, reads: RunStore, run_id: str) -> PulseCountsOut:
    """A run's pulse counters at its last checkpoint, with its devices' endurance."""
    record = runs.record(run_id, reads)
    counts = reads.pulse_counts(run_id)
    return PulseCountsOut(
        run=run_id,
        total=int(np.abs(counts).sum()),
        n_devices=len(counts),
        counts=counts.tolist(),
        endurance=device_endurance(record.config),
    )


def device_endurance(config: Mapping[str, Any]) -> int | None:
    """The endurance (selected pulses per device) a run config gives its device model.

    The simulated device model of a ``simulated`` bench, or the physics of an emulated lab,
    takes it from ``device.overrides.endurance`` (no preset sets one); a physical lab bench
    has none configured. None: no limit.
    """
    bench = config.get("bench")
    if not isinstance(bench, Mapping):
        return None
    section: Any = bench
    if bench.get("kind", "simulated") != "simulated":
        emulate = bench.get("emulate")
        section = emulate.get("physics") if isinstance(emulate, Mapping) else None
    for key in ("device", "overrides", "endurance"):
        section = section.get(key) if isinstance(section, Mapping) else None
    return section if isinstance(section, int) and not isinstance(section, bool) else None
