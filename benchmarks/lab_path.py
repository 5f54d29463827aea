"""Speed of the lab path: EqProp through the drivers and the emulated instruments.

Starts the emulated lab of a lab config (default ``bench_configs/emulated-lab.yaml``), settles
a batch of digits samples free and nudged, counting the commands the drivers send, then
trains one epoch on a freshly started emulated lab. It also times the epoch-start resync
(``read_conductances()`` of every device) on a board speaking protocol version 1 (one
``READ`` per device) and on one speaking version 2 (``READ:ROW`` / ``READ:TILE`` blocks):
commands, bytes both ways, their wire time at ``--wire-baud`` (10 bits a byte, what a
115200-baud UART needs for them at least), and the wall time, unpaced or, with
``--paced``, with the emulated link throttled to that baud rate. Prints one JSON line last:
{"samples_per_second": ..., "commands_per_settle": ..., "resync": {...}, ...}
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from hil.composition import build_bench, build_data
from hil.config import RunConfig, load_config
from hil.run import Run

REPO = Path(__file__).resolve().parents[1]

#: Bits a UART sends per byte (8N1: start, 8 data, stop).
BITS_PER_BYTE = 10


def resync(config: RunConfig, protocol: int, baud: int, paced: bool) -> dict[str, Any]:
    """Time ``read_conductances()`` of every device on the config's emulated lab with its
    boards speaking ``protocol`` (and paced at ``baud`` when ``paced``)."""
    raw = config.model_dump(mode="json")
    for board in raw["bench"]["emulate"]["boards"].values():
        board["protocol"] = protocol
        board["baudrate"] = baud if paced else None
    bench = build_bench(RunConfig.model_validate(raw))
    try:
        bench.read_conductances(np.arange(1))  # connect, arm, modes
        boards = list(bench.boards.values())
        traffic = sum(b.bytes_sent + b.bytes_received for b in boards)
        commands = bench.commands_sent
        start = time.perf_counter()
        bench.read_conductances()
        seconds = time.perf_counter() - start
        traffic = sum(b.bytes_sent + b.bytes_received for b in boards) - traffic
        return {
            "protocol": protocol,
            "devices": bench.network.n_devices,
            "commands": bench.commands_sent - commands,
            "bytes": traffic,
            "wire_seconds": round(traffic * BITS_PER_BYTE / baud, 2),
            "seconds": round(seconds, 2),
            "paced_at_baud": baud if paced else None,
        }
    finally:
        bench.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "bench_configs" / "emulated-lab.yaml"))
    parser.add_argument("--samples", type=int, default=256, help="samples settled per phase")
    parser.add_argument("--epochs", type=int, default=1, help="epochs trained for the timing")
    parser.add_argument("--wire-baud", type=int, default=115200, help="UART speed for wire time")
    parser.add_argument(
        "--paced", action="store_true", help="throttle the emulated board to --wire-baud"
    )
    parser.add_argument(
        "--resync-only", action="store_true", help="only the resync timings (no settle, no epoch)"
    )
    args = parser.parse_args()

    config = load_config(args.config, epochs=args.epochs)
    timings = {f"v{p}": resync(config, p, args.wire_baud, args.paced) for p in (1, 2)}
    speedup = {
        "wire": round(timings["v1"]["wire_seconds"] / timings["v2"]["wire_seconds"], 1),
        "wall": round(timings["v1"]["seconds"] / timings["v2"]["seconds"], 1),
    }
    result: dict[str, Any] = {"config": Path(args.config).name, "resync": timings}
    result["resync_speedup"] = speedup
    if args.resync_only:
        print(json.dumps(result))
        return

    data = build_data(config)
    bench = build_bench(config)
    try:
        net = bench.network
        x = net.encode_inputs(data.x_train[: args.samples])
        bench.settle(x[:4])  # connect, arm, warm the caches
        nudges = net.pair_currents(
            np.random.default_rng(0).uniform(-1e-6, 1e-6, (len(x), net.n_classes))
        )
        commands, settled = bench.commands_sent, bench.samples_settled
        start = time.perf_counter()
        bench.settle(x)
        bench.settle(x, nudges)
        settle_seconds = time.perf_counter() - start
        commands = bench.commands_sent - commands
        settled = bench.samples_settled - settled

        start = time.perf_counter()
        reads = 256
        bench.read_conductances(np.arange(reads))
        read_seconds = time.perf_counter() - start

        instruments = len(bench.config.instruments)
    finally:
        bench.close()
    run = Run(config).execute()
    history, train_seconds = run.history, run.seconds

    result |= {
        "network": net.describe(),
        "instruments": instruments,
        "samples_per_second": round(settled / settle_seconds, 1),
        "commands_per_settle": round(commands / settled, 2),
        "device_reads_per_second": round(reads / read_seconds, 1),
        "epochs": len(history),
        "seconds_per_epoch": round(float(np.mean([m.seconds for m in history])), 1),
        "train_seconds": round(train_seconds, 1),
        "test_accuracy": round(history[-1].test_accuracy, 4),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
