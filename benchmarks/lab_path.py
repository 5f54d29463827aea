"""Speed of the lab path: EqProp through the drivers and the emulated instruments.

Starts the emulated lab of a lab config (default ``bench_configs/emulated-lab.yaml``), settles
a batch of digits samples free and nudged, counting the commands the drivers send, then
trains one epoch on a freshly started emulated lab. Prints one JSON line last:
{"samples_per_second": ..., "commands_per_settle": ..., "seconds_per_epoch": ..., ...}
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hil.composition import build_bench, build_data
from hil.config import load_config
from hil.run import Run

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "bench_configs" / "emulated-lab.yaml"))
    parser.add_argument("--samples", type=int, default=256, help="samples settled per phase")
    parser.add_argument("--epochs", type=int, default=1, help="epochs trained for the timing")
    args = parser.parse_args()

    config = load_config(args.config, epochs=args.epochs)
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
    result = Run(config).execute()
    history, train_seconds = result.history, result.seconds

    print(
        json.dumps(
            {
                "config": Path(args.config).name,
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
        )
    )


if __name__ == "__main__":
    main()
