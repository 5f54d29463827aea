"""Learning that needs no retuning: digits over widths, amplifier gains and diode models.

Every cell trains the default digits config (``bench_configs/sim-digits.yaml``: its data,
bench and training section unchanged) with one hidden layer of the given width, the given
amplifier gain (``none`` for no amplifiers) and ideal or 1N4148-like Shockley clamping
diodes (I_s = 2.52 nA, n = 1.752, the SPICE 1N4148 model's values, on crossed rails
+0.12 / -0.12 V that make them clamp near +-0.3 V; ``--shockley-rails config`` keeps the
config's), for each seed. A cell that stops on a safety limit (or any other error) is
recorded with the reason. Prints a line per cell while it runs (a progress bar on a
terminal) and one JSON line last with every cell's test accuracy, the minimum per group
and whether the targets of docs/learning.md hold: every amplified cell >= 93 %, every
unamplified cell >= 90 %, no run stopped, no seed at chance.

    python benchmarks/robustness.py                        # the full grid (about 40 min)
    python benchmarks/robustness.py --hidden 16,256 --amps none,8 --diodes ideal --seeds 0
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hil.config.loading import validate_config
from hil.eqprop import nudge_current_bound
from hil.errors import HilError
from hil.events import EpochFinished, Event
from hil.network import Network
from hil.run import Run

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "bench_configs" / "sim-digits.yaml"

#: The SPICE 1N4148 model's saturation current (A) and emission coefficient.
SHOCKLEY_1N4148 = {"model": "shockley", "saturation_current": 2.52e-9, "ideality": 1.752}
#: The Shockley cells' (v_low, v_high) (V): crossed, so that the 1N4148 junctions clamp
#: where the ideal diodes do. A junction matches a hidden node's conductance (~0.65 mS) at
#: ~0.42 V, so a rail 0.42 - 0.30 V on the far side puts that point at +-0.3 V; on the
#: config's +-0.3 V rails it would sit at +-0.72 V, which the hidden nodes never reach
#: (docs/learning.md).
SHOCKLEY_RAILS = (0.12, -0.12)
#: Test accuracy every cell must reach, with and without amplifiers (docs/learning.md).
TARGET_AMPLIFIED = 0.93
TARGET_UNAMPLIFIED = 0.90


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def cell_config(
    base: dict[str, Any],
    hidden: int,
    amp: str,
    diode: str,
    seed: int,
    epochs: int | None = None,
    shockley_rails: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """The config mapping of one cell: ``base`` with its network's width, gain and diodes
    and the training seed changed (and the epochs and the Shockley cells' rails, if
    given)."""
    raw = copy.deepcopy(base)
    network = raw["network"]
    network["hidden"] = [hidden]
    network["amplifier_gain"] = None if amp == "none" else float(amp)
    network.setdefault("diode", {})
    if diode == "shockley":
        network["diode"].update(SHOCKLEY_1N4148)
        if shockley_rails is not None:
            network["diode"].update(v_low=shockley_rails[0], v_high=shockley_rails[1])
    elif diode == "ideal":
        network["diode"]["model"] = "ideal"
    else:
        raise SystemExit(f"--diodes: ideal or shockley, not {diode!r}")
    raw["training"]["seed"] = seed
    if epochs is not None:
        raw["training"]["epochs"] = epochs
    return raw


def run_cell(raw: dict[str, Any], on_epoch: Any) -> dict[str, Any]:
    """Train one cell; its result (a stop or an error is recorded, not raised)."""
    start = time.perf_counter()
    record: dict[str, Any] = {"stopped": None}
    try:
        config = validate_config(raw, "robustness cell")
        net = Network(config.network)
        t = config.training
        record["max_nudge_current_a"] = nudge_current_bound(net, t.beta, t.max_nudge_error)

        def listener(event: Event) -> None:
            if isinstance(event, EpochFinished):
                on_epoch(event.metrics)

        result = Run(config, listeners=[listener]).execute()
        last = result.history[-1]
        record.update(
            test_accuracy=round(last.test_accuracy, 4),
            train_accuracy=round(last.train_accuracy, 4),
            best_test_accuracy=round(max(m.test_accuracy for m in result.history), 4),
            pulses=int(sum(m.pulses for m in result.history)),
            pulses_capped=int(sum(m.pulses_capped for m in result.history)),
        )
    except HilError as exc:  # a safety limit, a solver failure, a config refused
        record.update(test_accuracy=None, stopped=f"{type(exc).__name__}: {exc}")
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


def verdict(cells: list[dict[str, Any]], n_classes: int) -> dict[str, Any]:
    """Minimum accuracy per (amplifier, diode) group and every cell that misses a target."""
    groups: dict[str, dict[str, Any]] = {}
    failures = []
    chance = 1.0 / n_classes
    for c in cells:
        key = f"amp={c['amplifier']} diode={c['diode']}"
        group = groups.setdefault(key, {"cells": 0, "min": None, "mean": None, "_sum": 0.0})
        target = TARGET_UNAMPLIFIED if c["amplifier"] == "none" else TARGET_AMPLIFIED
        acc = c["test_accuracy"]
        name = f"hidden={c['hidden']} {key} seed={c['seed']}"
        if c["stopped"]:
            failures.append(f"{name}: stopped ({c['stopped']})")
            continue
        group["cells"] += 1
        group["_sum"] += acc
        group["min"] = acc if group["min"] is None else min(group["min"], acc)
        if acc < 2 * chance:
            failures.append(f"{name}: collapsed to {acc:.2%} (chance {chance:.0%})")
        elif acc < target:
            failures.append(f"{name}: {acc:.2%} < {target:.0%} by {target - acc:.2%}")
    for group in groups.values():
        total = group.pop("_sum")
        group["mean"] = round(total / group["cells"], 4) if group["cells"] else None
    return {"groups": groups, "failures": failures, "targets_met": not failures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="the base config")
    parser.add_argument("--hidden", default="16,32,64,128,256", help="hidden widths")
    parser.add_argument("--amps", default="none,2,4,8", help="amplifier gains (none: none)")
    parser.add_argument("--diodes", default="ideal,shockley", help="ideal and/or shockley")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds")
    parser.add_argument("--epochs", type=int, help="override training.epochs")
    parser.add_argument(
        "--shockley-rails",
        metavar="LOW,HIGH",
        default=",".join(str(v) for v in SHOCKLEY_RAILS),
        help="v_low,v_high of the Shockley cells' clamps (V), or 'config' for the config's "
        "rails (default %(default)s: crossed, knees near +-0.3 V)",
    )
    args = parser.parse_args()
    rails = None
    if args.shockley_rails != "config":
        try:
            low, high = (float(v) for v in args.shockley_rails.split(","))
        except ValueError:
            parser.error(
                f"--shockley-rails: LOW,HIGH in volts or 'config', not {args.shockley_rails!r}"
            )
        rails = (low, high)

    base = yaml.safe_load(Path(args.config).read_text())
    grid = list(
        itertools.product(
            [int(h) for h in _list(args.hidden)],
            _list(args.amps),
            _list(args.diodes),
            [int(s) for s in _list(args.seeds)],
        )
    )
    console = Console(stderr=True, highlight=False)
    load_before = os.getloadavg()
    started = time.perf_counter()
    cells: list[dict[str, Any]] = []
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not console.is_terminal,
    )
    with progress:
        task = progress.add_task("robustness", total=len(grid), status="")
        for hidden, amp, diode, seed in grid:
            label = f"hidden {hidden} amp {amp} {diode} seed {seed}"

            def on_epoch(metrics: Any, label: str = label) -> None:
                progress.update(
                    task,
                    status=f"{label}: epoch {metrics.epoch} test {metrics.test_accuracy:.1%}",
                )

            progress.update(task, status=label)
            raw = cell_config(base, hidden, amp, diode, seed, args.epochs, rails)
            record = {"hidden": hidden, "amplifier": amp, "diode": diode, "seed": seed}
            record.update(run_cell(raw, on_epoch))
            cells.append(record)
            acc = record["test_accuracy"]
            shown = f"{acc:.2%}" if acc is not None else f"stopped: {record['stopped']}"
            progress.console.print(f"{label}: {shown} ({record['seconds']} s)")
            progress.advance(task)

    n_classes = int(base["network"]["outputs"])
    summary = {
        "config": str(args.config),
        "epochs": args.epochs or base["training"].get("epochs"),
        "training": {k: v for k, v in base["training"].items() if k != "seed"},
        "shockley": {
            **SHOCKLEY_1N4148,
            "v_low": rails[0] if rails else base["network"].get("diode", {}).get("v_low"),
            "v_high": rails[1] if rails else base["network"].get("diode", {}).get("v_high"),
        },
        "targets": {"amplified": TARGET_AMPLIFIED, "unamplified": TARGET_UNAMPLIFIED},
        **verdict(cells, n_classes),
        "cells": cells,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
