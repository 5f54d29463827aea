"""The ``hil`` command: train networks on benches and look after benches.

Exit status: 0 on success, 1 when a run failed (instrument fault, non-convergence) or
``hil bench check`` found a mismatch, 2 for a bad config or bad arguments, 130 when
interrupted (the bench is left in its safe state and the run can be resumed).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import yaml

from hil.errors import ConfigError, HilError, InstrumentError


def _train(args: argparse.Namespace) -> int:
    from hil.config import build_bench, load_config
    from hil.data import load_dataset
    from hil.plots import plot_learning_curves
    from hil.progress import ProgressBar
    from hil.trainer import Trainer

    config = load_config(args.config, epochs=args.epochs, seed=args.seed)
    data = load_dataset(config.data, config.training.seed)
    config.check_fits(data)
    run_dir = Path(args.resume or args.out or _default_run_dir(config.name))
    bench = build_bench(config)
    try:  # from here on the bench is closed (safe state first) on every way out
        listeners = [] if args.quiet else [ProgressBar(config.training.epochs)]
        trainer = Trainer(bench, config.training, data, run_dir, listeners)
        if args.resume:
            done = trainer.resume()
            print(f"resuming {run_dir} after epoch {done}", file=sys.stderr)
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
        if not args.quiet:
            print(
                f"{config.name}: {bench.network.describe()}; {len(data.y_train)} train / "
                f"{len(data.y_test)} test samples of {data.name}; results in {run_dir}",
                file=sys.stderr,
            )
        start = time.perf_counter()
        history = trainer.fit()
    except KeyboardInterrupt:
        bench.close()
        print(
            f"\ninterrupted: {_safe_state_words(bench)}; resume with "
            f"`hil train {args.config} --resume {run_dir}`",
            file=sys.stderr,
        )
        return 130
    except InstrumentError as exc:
        bench.close()
        reason = f"{exc.reason}; {_safe_state_words(bench)}"
        raise InstrumentError(exc.instrument, exc.command, reason) from exc
    finally:
        bench.close()
    _write_metrics_csv(history, run_dir / "metrics.csv")
    plot_learning_curves(history, run_dir / "curves.png", f"{config.name}: EqProp on {data.name}")
    last = history[-1]
    summary = {
        "config": str(args.config),
        "run_dir": str(run_dir),
        "epochs": last.epoch,
        "test_accuracy": last.test_accuracy,
        "train_accuracy": last.train_accuracy,
        "test_loss": last.test_loss,
        "pulses": int(sum(m.pulses for m in history)),
        "pulses_refused": int(sum(m.pulses_refused for m in history)),
        "reads": int(sum(m.reads for m in history)),
        "seconds": round(time.perf_counter() - start, 3),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"test accuracy {100 * last.test_accuracy:.2f}% after {last.epoch} epochs; "
            f"curves in {run_dir / 'curves.png'}"
        )
    return 0


def _safe_state_words(bench: object) -> str:
    """What the user should know about the bench after a failed or interrupted run."""
    unconfirmed = getattr(bench, "unconfirmed_safe", ())
    if unconfirmed:
        names = ", ".join(unconfirmed)
        return f"could NOT confirm the safe state of {names}: switch their outputs off by hand"
    return "bench left in its safe state"


def _bench_check(args: argparse.Namespace) -> int:
    """``hil bench check CONFIG``: one table row per check; 1 on any mismatch or skip."""
    from hil.config import build_bench_for_check, load_config

    config = load_config(args.config)
    bench = build_bench_for_check(config)
    try:
        rows = bench.check()
    finally:
        bench.close()
    header = ("instrument", "check", "expected", "found", "status")
    table = [header, *[(r.instrument, r.item, r.expected, r.found, r.status) for r in rows]]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    for line in table:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    failed = [r for r in rows if r.ok is False]
    skipped = [r for r in rows if r.ok is None]
    verdict = f"{len(failed)} mismatch(es)" if failed else "bench matches its config"
    if skipped:
        verdict += f", {len(skipped)} check(s) skipped"
    print(f"{args.config}: {verdict}", file=sys.stderr)
    return 1 if failed or skipped else 0


def _default_run_dir(name: str) -> Path:
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _write_metrics_csv(history: list, path: Path) -> None:
    rows = [asdict(m) for m in history]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``hil`` (every command has help text)."""
    parser = argparse.ArgumentParser(
        prog="hil",
        description="Train analog memristor networks with Equilibrium Propagation on "
        "simulated, emulated or physical benches.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = sub.add_parser(
        "train",
        help="train a network on the bench a config describes",
        description="Train with EqProp on the bench of CONFIG, showing progress; writes "
        "metrics.json, metrics.csv, curves.png and checkpoint.npz to the run directory.",
    )
    train.add_argument(
        "config", type=Path, help="run config (YAML), e.g. bench_configs/sim-digits.yaml"
    )
    train.add_argument("--epochs", type=int, help="override training.epochs")
    train.add_argument("--seed", type=int, help="override training.seed")
    train.add_argument("--out", type=Path, help="run directory (default runs/NAME-TIME)")
    train.add_argument(
        "--resume", type=Path, metavar="RUN_DIR", help="continue a run from its last checkpoint"
    )
    train.add_argument(
        "--json", action="store_true", help="print one JSON summary as the last line"
    )
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.set_defaults(func=_train)

    bench = sub.add_parser(
        "bench",
        help="look after the bench a config describes",
        description="Commands that talk to a bench without training.",
    )
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, metavar="ACTION")
    check = bench_sub.add_parser(
        "check",
        help="identify every instrument and compare it with the config",
        description="Identify every instrument of CONFIG's lab bench, check channel counts "
        "and ranges against the config, read a few devices, return to the safe state and "
        "print a table. Emulated labs (an `emulate:` section) are started first. Exit "
        "status 0 when everything matches, 1 on any mismatch or unreachable instrument, "
        "2 for a bad config.",
    )
    check.add_argument(
        "config", type=Path, help="run config (YAML), e.g. bench_configs/emulated-lab.yaml"
    )
    check.set_defaults(func=_bench_check)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hil`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except HilError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
