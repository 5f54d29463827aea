"""Sweep throughput: a 16-cell grid on a local Dask cluster with 1 and then 2 workers.

Each cell is one run of the default digits config on a simulated bench (a short one:
``--train-limit`` samples, ``--epochs`` epochs), recorded in a throw-away run store. The
grid is 2 betas x 2 learning rates x 4 seeds. The cluster's start-up is timed apart from the
cells. Prints one JSON line last:
{"cells": 16, "results": [{"workers": 1, "cells_per_minute": ...}, {"workers": 2, ...}], ...}
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml

from hil.store import RunStore
from hil.sweep import Axis, SweepRunner, SweepSpec, create_sweep, dask_client

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "bench_configs" / "sim-digits.yaml"))
    parser.add_argument("--train-limit", type=int, default=400, help="training samples a cell")
    parser.add_argument("--epochs", type=int, default=2, help="epochs a cell")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    config = yaml.safe_load(Path(args.config).read_text())
    config["data"].update(train_limit=args.train_limit, test_limit=200)
    config["training"]["epochs"] = args.epochs
    grid = (Axis("training.beta", (0.25, 0.5)), Axis("training.learning_rate", (10.0, 20.0)))
    spec = SweepSpec(config, grid, (0, 1, 2, 3))
    results = []
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as data, RunStore.open(Path(data)) as store:
            start = time.perf_counter()
            with dask_client(workers=workers) as client:
                startup = time.perf_counter() - start
                sweep_id = create_sweep(store, spec)
                start = time.perf_counter()
                cells = SweepRunner(store, sweep_id, client=client).execute()
                seconds = time.perf_counter() - start
            results.append(
                {
                    "workers": workers,
                    "cluster_start_seconds": round(startup, 2),
                    "sweep_seconds": round(seconds, 2),
                    "cells_per_minute": round(60 * len(cells) / seconds, 1),
                    "finished": sum(c.status == "finished" for c in cells),
                }
            )
    base = results[0]["cells_per_minute"]
    print(
        json.dumps(
            {
                "cells": len(spec.cells()),
                "cell": {"train_limit": args.train_limit, "epochs": args.epochs},
                "results": results,
                "speedup": {
                    str(r["workers"]): round(r["cells_per_minute"] / base, 2) for r in results
                },
            }
        )
    )


if __name__ == "__main__":
    main()
