"""The ``hil`` command: train networks on benches, keep their runs, serve them over REST.

Commands: ``hil train``, ``hil runs list|show|export``, ``hil serve``, ``hil bench check``,
``hil configs``. Exit status: 0 on success, 1 when a run failed (instrument fault,
non-convergence, a file that cannot be written, a run or bench in use) or ``hil bench
check`` found a mismatch, 2 for a bad config or bad arguments, 130 / 143 / 129 when stopped
by Ctrl-C / SIGTERM / SIGHUP (the bench is left in its safe state and the run can be
resumed).
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hil.errors import ConfigError, HilError
from hil.run_files import RunDirectory
from hil.stopping import exit_status, stop_on_signals
from hil.store import DATA_DIR_ENV, RUN_STATUSES

if TYPE_CHECKING:
    from rich.console import Console

    from hil.store import RunStore
    from hil.sweep import SweepSpec

log = logging.getLogger("hil")


def _train(args: argparse.Namespace) -> int:
    from hil.config import load_config
    from hil.progress import ProgressBar
    from hil.run import Run, check_resumable, resume_config
    from hil.store import RunStore

    if args.resume is not None:
        store, run_id = _locate_run(args.resume, args.data_dir)
        store.mark_orphans()  # a run whose process died is `interrupted`, and resumable
        record = store.get_run(run_id)
        if record.status == "running":
            store.run_lock(run_id).acquire().release()  # InUseError: PID n trains it now
        check_resumable(record.status, run_id)
        given = load_config(args.config) if args.config else None
        config = resume_config(record.config, given, epochs=args.epochs, seed=args.seed)
        if config.model_dump(mode="json") != record.config:
            store.set_config(run_id, config.model_dump(mode="json"))
    else:
        if args.config is None:
            raise ConfigError("hil train needs a CONFIG (or --resume RUN to continue a run)")
        config = load_config(args.config, epochs=args.epochs, seed=args.seed)
        if args.out is not None:
            store, run_id = RunStore.open(args.out.parent), args.out.name
        else:
            store = RunStore.open(args.data_dir)
            run_id = store.new_run_id(config.name)
    run_dir = store.run_dir(run_id)
    listeners = [] if args.quiet else [ProgressBar()]
    run = Run(
        config, store=store, run_id=run_id, resume=args.resume is not None, listeners=listeners
    )
    try:
        result = run.execute()
    except KeyboardInterrupt as exc:
        words = run.safe_state.words() if run.safe_state else "no bench was built"
        if (run_dir / RunDirectory.CHECKPOINT).exists():
            then = f"continue with `hil train --resume {run_dir}`"
        else:  # stopped before the first checkpoint: a resume would have nothing to load
            then = (
                "no checkpoint was written yet (one after every epoch, or every "
                "training.checkpoint_every steps): start the run again"
            )
        print(f"\ninterrupted{_by(exc)}: {words}; {then}", file=sys.stderr)
        return exit_status(exc)
    finally:
        store.close()
    summary = {"config": str(args.config or record.config.get("name")), "run_id": run_id}
    summary.update(result.summary())
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"test accuracy {100 * summary['test_accuracy']:.2f}% after {summary['epochs']} "
            f"epochs; run {run_id}, curves in {run_dir / 'curves.png'}"
        )
    return 0


def _locate_run(ref: str, data_dir: Path | None) -> tuple[RunStore, str]:
    """A run named by its folder (``runs/ID``) or by its id in the data folder."""
    from hil.store import RunStore

    path = Path(ref)
    if path.is_dir():
        return RunStore.open(path.resolve().parent), path.resolve().name
    return RunStore.open(data_dir), ref


def _runs(args: argparse.Namespace) -> int:
    """``hil runs list|show|export``."""
    from hil.store import RunStore

    if args.runs_command == "list":
        with RunStore.open(args.data_dir) as store:
            store.mark_orphans()
            records = store.list_runs(args.status, limit=args.limit)
            last = {r.id: (store.metrics(r.id) or [{}])[-1] for r in records}
        _print_runs(records, last)
        return 0
    store, run_id = _locate_run(args.run, args.data_dir)
    with store:
        store.mark_orphans()
        record = store.get_run(run_id)
        if args.runs_command == "show":
            shown = {
                **record.as_dict(),
                "run_dir": str(store.run_dir(run_id)),
                "epochs": record.config["training"].get("epochs"),
                "metrics": store.metrics(run_id),
                "checkpoints": store.checkpoints(run_id)[-1:],
                "pulses": int(store.pulse_counts(run_id).sum()),
                "config": record.config,
            }
            print(json.dumps(shown, indent=1))
            return 0
        return _export(store, run_id, args.to)


def _print_runs(records: list, last: dict) -> None:
    from rich.table import Table

    table = Table("id", "status", "epochs", "test acc.", "created", box=None)
    for r in records:
        acc = last[r.id].get("test_accuracy")
        table.add_row(
            r.id,
            r.status,
            f"{r.epochs_done}/{r.config['training'].get('epochs', '?')}",
            "-" if acc is None else f"{100 * acc:.2f}%",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at)),
        )
    _console().print(table)


def _export(store: RunStore, run_id: str, to: Path) -> int:
    """Metrics as CSV and the learning curves as PNG, from the store."""
    from hil.events import EpochMetrics
    from hil.run_files import atomic_write_text, metrics_csv

    records = store.metrics(run_id)
    if not records:
        raise ConfigError(f"run {run_id} has no finished epoch to export")
    to.mkdir(parents=True, exist_ok=True)
    csv_path = atomic_write_text(to / f"{run_id}-metrics.csv", metrics_csv(records))
    print(csv_path)
    try:
        from hil.plots import plot_learning_curves
    except ImportError:
        log.warning("matplotlib is not installed (pip install 'hil-eqprop[plots]'): no PNG")
        return 0
    history = [EpochMetrics.from_dict(r) for r in records]
    print(plot_learning_curves(history, to / f"{run_id}-curves.png", run_id))
    return 0


def _console() -> Console:
    """Standard output for tables: a terminal's own width, else wide enough that a row
    never wraps in a log file."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200, highlight=False)


def _by(interrupt: KeyboardInterrupt) -> str:
    return f" by {interrupt}" if str(interrupt) else ""


def _sweep(args: argparse.Namespace) -> int:
    """``hil sweep CONFIG|SWEEP_FILE --grid ... --seeds ...``, ``hil sweep --resume ID`` and
    ``hil sweep show ID``; exit status 1 when a cell failed."""
    from hil.store import RunStore
    from hil.sweep import SweepBar, SweepRunner, create_sweep, sweep_summary

    target = list(args.target)
    if target[:1] == ["show"]:
        if len(target) != 2:
            raise ConfigError("hil sweep show needs one SWEEP_ID")
        with RunStore.open(args.data_dir) as store:
            return _sweep_show(store, target[1], args.to, args.json)
    if args.resume is not None:
        if target or args.grid or args.seeds:
            raise ConfigError("hil sweep --resume ID takes no CONFIG, --grid or --seeds")
    elif len(target) != 1:
        raise ConfigError("hil sweep needs one CONFIG or sweep file (or --resume ID)")
    if not args.verbose:  # Dask logs every worker's start and stop at INFO
        try:
            import distributed  # noqa: F401  (importing it sets its loggers' levels)
        except ImportError:
            pass  # dask_client says which extra is missing
        logging.getLogger("distributed").setLevel(logging.WARNING)
    store = RunStore.open(args.data_dir)
    try:
        if args.resume is not None:
            sweep_id = store.get_sweep(args.resume).id
        else:
            sweep_id = create_sweep(store, _sweep_spec(target[0], args.grid, args.seeds))
        listeners = [] if args.quiet else [SweepBar()]
        runner = SweepRunner(
            store,
            sweep_id,
            scheduler=args.scheduler,
            workers=args.workers,
            listeners=listeners,
            retries=args.retries,
        )
        try:
            runner.execute()
        except KeyboardInterrupt as exc:
            print(
                f"\ninterrupted{_by(exc)}: finished cells are recorded; continue with "
                f"`hil sweep --resume {sweep_id}`",
                file=sys.stderr,
            )
            return exit_status(exc)
        summary = sweep_summary(store, sweep_id)
    finally:
        store.close()
    failed = [c for c in summary["cells"] if c["status"] != "finished"]
    if args.json:
        print(json.dumps(summary))
    else:
        done = len(summary["cells"]) - len(failed)
        print(
            f"sweep {sweep_id}: {done}/{len(summary['cells'])} cells finished "
            f"({runner.submitted} run now); see `hil sweep show {sweep_id}`"
        )
    return 1 if failed else 0


def _sweep_spec(ref: str, grid: list[str], seeds: str | None) -> SweepSpec:
    """The sweep a CONFIG (or a sweep file) and the flags describe."""
    import yaml

    from hil.config.loading import find_config
    from hil.sweep import (
        SweepSpec,
        base_config,
        is_sweep_file,
        load_sweep_file,
        parse_grid,
        parse_seeds,
    )

    path = find_config(ref)
    try:
        head = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        head = None  # base_config reports what is wrong with it
    if is_sweep_file(head):
        config, axes, file_seeds = load_sweep_file(path)
    else:
        config, axes, file_seeds = base_config(path), [], None
    flagged = [parse_grid(g) for g in grid]
    by_field = {a.field: a for a in axes}
    by_field.update({a.field: a for a in flagged})  # a flag replaces the file's values
    if seeds is not None:
        chosen = parse_seeds(seeds)
    elif file_seeds is not None:
        chosen = file_seeds
    else:
        chosen = (int((config.get("training") or {}).get("seed", 0)),)
    return SweepSpec(config, tuple(by_field.values()), chosen)


def _sweep_show(store: RunStore, sweep_id: str, to: Path, as_json: bool) -> int:
    """A table of every setting (mean and spread over seeds) and a PNG per swept field."""
    from rich.table import Table

    from hil.sweep_report import plot_sweep, settings

    record = store.get_sweep(sweep_id)
    fields = [str(f) for f, _ in record.spec["grid"]]
    rows = settings(store.sweep_cells(sweep_id))
    paths: list[Path] = []
    try:
        to.mkdir(parents=True, exist_ok=True)
        paths = plot_sweep(rows, fields, to, sweep_id)
    except ImportError:
        log.warning("matplotlib is not installed (pip install 'hil-eqprop[plots]'): no PNG")
    if as_json:
        shown = {
            "sweep_id": sweep_id,
            "status": record.status,
            "settings": [r.as_dict() for r in rows],
            "plots": [str(p) for p in paths],
        }
        print(json.dumps(shown))
        return 0
    table = Table(*fields, "seeds", "test acc.", "spread", "failed", box=None)
    for r in rows:
        mean, std = r.mean, r.std
        table.add_row(
            *(str(r.params[f]) for f in fields),
            f"{len(r.accuracies)}/{len(r.seeds)}",
            "-" if mean is None else f"{100 * mean:.2f}%",
            "-" if std is None else f"±{100 * std:.2f}",
            str(r.failed),
        )
    console = _console()
    console.print(f"sweep {sweep_id} ({record.status})", markup=False)
    console.print(table)
    for path in paths:
        print(path)
    return 0


def _bench_check(args: argparse.Namespace) -> int:
    """``hil bench check CONFIG``: one table row per check; 1 on any mismatch or skip."""
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
    _console().print(table)
    failed = [r for r in rows if r.ok is False]
    skipped = [r for r in rows if r.ok is None]
    verdict = f"{len(failed)} mismatch(es)" if failed else "bench matches its config"
    if skipped:
        verdict += f", {len(skipped)} check(s) skipped"
    print(f"{args.config}: {verdict}", file=sys.stderr)
    return 1 if failed or skipped else 0


def _serve(args: argparse.Namespace) -> int:
    """``hil serve CONFIG...``: the REST API until a signal; its exit status."""
    try:
        from hil.api.server import serve
        from hil.api.settings import Settings, load_tokens, token_from_env
    except ImportError as exc:  # fastapi / uvicorn are the `api` extra
        raise ConfigError(
            f"hil serve needs the API extra ({exc.name} is not installed): "
            "pip install 'hil-eqprop[api]'"
        ) from None

    tokens = token_from_env() + (load_tokens(args.tokens) if args.tokens else ())
    settings = Settings(
        benches=tuple(args.configs),
        data_dir=args.data_dir,
        tokens=tokens,
        config_root=args.config_root,
    )
    return serve(settings, args.host, args.port)


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
    train.add_argument("config", nargs="?", help=config_help + " (optional with --resume)")
    train.add_argument("--epochs", type=int, help="override training.epochs")
    train.add_argument("--seed", type=int, help="override training.seed")
    train.add_argument(
        "--out",
        type=Path,
        help="run folder (default DATA_DIR/NAME-TIME); its parent holds the run store",
    )
    train.add_argument(
        "--resume",
        metavar="RUN",
        help="continue a run (its folder or its id) from its last checkpoint, with its "
        "stored config; only --epochs may change",
    )
    _data_dir_option(train)
    train.add_argument(
        "--json", action="store_true", help="print one JSON summary as the last line"
    )
    train.add_argument("--quiet", action="store_true", help="no progress output")
    train.set_defaults(func=_train)

    runs = sub.add_parser(
        "runs",
        help="list, show and export the runs of a data folder",
        description="The runs recorded in the run store of a data folder (SQLite).",
    )
    runs_sub = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    runs_list = runs_sub.add_parser("list", help="one line per run, newest first")
    runs_list.add_argument("--status", choices=RUN_STATUSES, help="only runs of this status")
    runs_list.add_argument("--limit", type=int, default=50, help="most runs shown (50)")
    runs_show = runs_sub.add_parser("show", help="a run's record, metrics and config as JSON")
    runs_export = runs_sub.add_parser(
        "export", help="a run's metrics as CSV and its learning curves as PNG"
    )
    runs_export.add_argument(
        "--to", type=Path, default=Path("."), help="folder to write into (default: here)"
    )
    for action in (runs_list, runs_show, runs_export):
        _data_dir_option(action)
    for action in (runs_show, runs_export):
        action.add_argument("run", metavar="RUN", help="the run's folder or its id")
    runs.set_defaults(func=_runs)

    sweep = sub.add_parser(
        "sweep",
        help="run a grid of configs and seeds on a Dask cluster; show a sweep",
        description="Run one simulated run per cell of a grid (config fields x values x "
        "seeds) on a Dask cluster: a LocalCluster of --workers processes on loopback, or "
        "the scheduler at --scheduler. Every cell is recorded in the run store as run "
        "SWEEP_ID-cNNN; --resume SWEEP_ID runs only the cells not finished. `hil sweep show "
        "SWEEP_ID` prints a table (mean and spread over seeds) and writes a PNG per swept "
        "field. Exit status 1 when a cell failed, 2 for a bad config or grid value.",
    )
    sweep.add_argument(
        "target",
        nargs="*",
        metavar="CONFIG | show SWEEP_ID",
        help=config_help + ", or a sweep file (YAML with config, grid, seeds); or `show ID`",
    )
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="FIELD=V1,V2",
        help="a swept config field and its values (YAML scalars), e.g. training.beta=0.25,0.5; "
        "repeat for more fields",
    )
    sweep.add_argument(
        "--seeds", metavar="SEEDS", help="training seeds: 0-4, 0,2,5 (default: the config's)"
    )
    where = sweep.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=int, metavar="N", help="local worker processes (default: CPUs)"
    )
    where.add_argument(
        "--scheduler", metavar="ADDRESS", help="a Dask scheduler, e.g. tcp://HOST:8786"
    )
    sweep.add_argument("--resume", metavar="SWEEP_ID", help="run the missing cells of a sweep")
    sweep.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="N",
        help="retries of a cell whose task raised (2); a dead worker's cell is rescheduled",
    )
    sweep.add_argument(
        "--to",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="show: folder for the PNG plots (default: here)",
    )
    _data_dir_option(sweep)
    sweep.add_argument(
        "--json", action="store_true", help="print one JSON object (sweep and cells) last"
    )
    sweep.add_argument("--quiet", action="store_true", help="no progress output")
    sweep.set_defaults(func=_sweep)

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

    serve = sub.add_parser(
        "serve",
        help="serve the REST API for lab dashboards (see docs/api.md)",
        description="Serve the benches of CONFIG... over HTTP (FastAPI, uvicorn): leases, "
        "manual operations, runs, server-sent events and the emergency stop. Each bench's "
        "id is its config's `name`. Tokens: $HIL_API_TOKEN (every scope) and --tokens FILE; "
        "without any, only a loopback address is served. SIGINT, SIGTERM and SIGHUP stop "
        "the runs (checkpoints kept) and leave every bench in its safe state (exit status "
        "128 + signal).",
    )
    serve.add_argument("configs", nargs="+", metavar="CONFIG", help=config_help)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    serve.add_argument(
        "--tokens", type=Path, metavar="FILE", help="YAML of named tokens and their scopes"
    )
    serve.add_argument(
        "--config-root",
        type=Path,
        default=Path("."),
        metavar="DIR",
        help="POST /runs may name config files under DIR (default: here) or shipped configs",
    )
    _data_dir_option(serve)
    serve.set_defaults(func=_serve)
    return parser


def _data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help=f"data folder: the run store and the run folders (default ${DATA_DIR_ENV} or ./runs)",
    )


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
        with stop_on_signals():
            return int(args.func(args))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except HilError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a run folder that cannot be written: one line, the path
        where = f" {exc.filename}:" if exc.filename else ""
        print(f"error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:  # the run store: disk full, read-only folder, locked
        print(f"error: run store: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted{_by(exc)}", file=sys.stderr)
        return exit_status(exc)


if __name__ == "__main__":
    sys.exit(main())
