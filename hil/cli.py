"""The ``hil`` command: train networks on benches and look after benches.

Exit status: 0 on success, 1 when a run failed (instrument fault, non-convergence, a file
that cannot be written) or ``hil bench check`` found a mismatch, 2 for a bad config or bad
arguments, 130 when interrupted (the bench is left in its safe state and the run can be
resumed).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from hil.errors import ConfigError, HilError

log = logging.getLogger("hil")


def _train(args: argparse.Namespace) -> int:
    from hil.config import load_config
    from hil.progress import ProgressBar
    from hil.run import Run, default_run_dir

    config = load_config(args.config, epochs=args.epochs, seed=args.seed)
    run_dir = Path(args.resume or args.out or default_run_dir(config.name))
    listeners = [] if args.quiet else [ProgressBar()]
    run = Run(config, run_dir, resume=args.resume is not None, listeners=listeners)
    try:
        result = run.execute()
    except KeyboardInterrupt:
        words = run.safe_state.words() if run.safe_state else "no bench was built"
        print(
            f"\ninterrupted: {words}; resume with `hil train {args.config} --resume {run_dir}`",
            file=sys.stderr,
        )
        return 130
    summary = {"config": str(args.config), **result.summary()}
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"test accuracy {100 * summary['test_accuracy']:.2f}% after {summary['epochs']} "
            f"epochs; curves in {run_dir / 'curves.png'}"
        )
    return 0


def _bench_check(args: argparse.Namespace) -> int:
    """``hil bench check CONFIG``: one table row per check; 1 on any mismatch or skip."""
    from rich.console import Console
    from rich.table import Table

    from hil.composition import build_check_bench, check_bench
    from hil.config import load_config

    config = load_config(args.config)
    bench = build_check_bench(config)
    try:
        rows = check_bench(bench)
    finally:
        bench.close()
    table = Table("instrument", "check", "expected", "found", "status", box=None)
    for r in rows:
        table.add_row(r.instrument, r.item, r.expected, r.found, r.status)
    # wide enough that a row never wraps in a log file; a terminal uses its own width
    Console(width=None if sys.stdout.isatty() else 200, highlight=False).print(table)
    failed = [r for r in rows if r.ok is False]
    skipped = [r for r in rows if r.ok is None]
    verdict = f"{len(failed)} mismatch(es)" if failed else "bench matches its config"
    if skipped:
        verdict += f", {len(skipped)} check(s) skipped"
    print(f"{args.config}: {verdict}", file=sys.stderr)
    return 1 if failed or skipped else 0


def _configs(args: argparse.Namespace) -> int:
    """``hil configs``: the shipped configs, one per line."""
    from hil.config.loading import shipped_configs

    for name in shipped_configs():
        print(name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``hil`` (every command has help text)."""
    parser = argparse.ArgumentParser(
        prog="hil",
        description="Train analog memristor networks with Equilibrium Propagation on "
        "simulated, emulated or physical benches.",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )
    parser.add_argument("-q", "--quiet-logs", action="store_true", help="only log errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = (
        "run config: a YAML file, or the name of a shipped config (see `hil configs`), "
        "e.g. sim-digits"
    )
    train = sub.add_parser(
        "train",
        help="train a network on the bench a config describes",
        description="Train with EqProp on the bench of CONFIG, showing progress; writes "
        "config.yaml, metrics.json, metrics.csv, curves.png and checkpoint.npz to the run "
        "directory.",
    )
    train.add_argument("config", help=config_help)
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

    configs = sub.add_parser(
        "configs",
        help="list the configs shipped with the package",
        description="List the shipped configs; `hil train NAME` accepts any of them.",
    )
    configs.set_defaults(func=_configs)

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
    check.add_argument("config", help=config_help)
    check.set_defaults(func=_bench_check)
    return parser


def configure_logging(verbose: int, quiet: bool) -> None:
    """Log to standard error: warnings by default, ``-v`` info, ``-vv`` debug, ``-q`` errors."""
    level = (
        logging.ERROR if quiet else [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)]
    )
    global _handler
    root = logging.getLogger()
    if _handler is not None:  # main() called again in one process (tests, notebooks)
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(_handler)
    root.setLevel(level)


_handler: logging.Handler | None = None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hil`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.quiet_logs)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except HilError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a run directory that cannot be written: one line, the path
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error:{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
