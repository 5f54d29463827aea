"""EqProp on digits with every device preset and every programming strategy.

Every run starts from the default config (bench_configs/sim-digits.yaml: network, split,
learning rate and its decay, seed) and changes only the device and the programming
strategy; the split, the batches and the initial conductances draw from the same seed.
Write-verify's threshold and tolerance are in each device's nominal steps, which differ a
lot between devices, so they are set per device (``WRITE_VERIFY`` below); the sign rule
uses its default threshold (0.5 nominal steps) everywhere.

The measured presets read Sandia's tables from ``--data-dir`` (default
``../shared/data/device_luts`` next to the repository); without them their rows are
skipped and the JSON says so.

Prints one JSON line last:
{"ideal_test_accuracy": ..., "results": [{"device": ..., "programming": ...,
"test_accuracy": ..., "pulses_per_device": ..., "seconds": ...}, ...]}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hil.composition import build_data
from hil.config import RunConfig, load_config
from hil.network import Network
from hil.run import Run

REPO = Path(__file__).resolve().parents[1]
PRESETS = ("ideal", "reram", "ecram", "taox_measured", "enode_measured")
MEASURED = ("taox_measured", "enode_measured")
STRATEGIES = ("open_loop", "sign", "write_verify")

#: Write-verify per device (threshold and tolerance in the device's nominal steps): about
#: one step where pulses are precise, more where one pulse's noise (ReRAM: 4 steps of
#: cycle-to-cycle noise, 0.5 % read noise) or the step itself (TaOx: ~60 % of the range up,
#: ~15 % down) makes a tighter target a lottery.
WRITE_VERIFY: dict[str, dict[str, float]] = {
    "ideal": {"threshold": 0.5, "tolerance": 1.0},
    "reram": {"threshold": 5.0, "tolerance": 5.0},
    "ecram": {"threshold": 1.0, "tolerance": 2.0},
    "taox_measured": {"threshold": 0.1, "tolerance": 0.5},
    "enode_measured": {"threshold": 0.5, "tolerance": 1.0},
}


def run_config(base: RunConfig, preset: str, strategy: str, data_dir: Path) -> RunConfig:
    """The base config with another device and programming strategy."""
    raw = base.model_dump(mode="json", exclude_unset=False)
    bench = raw["bench"]
    bench["device"] = {"preset": preset}
    if preset in MEASURED:
        bench["device"]["data_dir"] = str(data_dir)
    if preset != "ideal":
        bench.pop("n_states")
        bench.update(pulse_amplitude_v=None, pulse_width_s=None)  # the device's nominal pulse
    programming = {"strategy": strategy}
    if strategy == "write_verify":
        programming.update(WRITE_VERIFY[preset])
    raw["training"]["programming"] = programming
    return RunConfig.model_validate(raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "bench_configs" / "sim-digits.yaml"))
    parser.add_argument(
        "--epochs", type=int, default=10, help="epochs per run (default 10, as the config)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=REPO.parent / "shared" / "data" / "device_luts",
        help="folder of the measured tables (TaOx, ENODe)",
    )
    parser.add_argument("--seed", type=int, help="override training.seed (split, devices, batches)")
    parser.add_argument("--presets", nargs="+", choices=PRESETS, default=list(PRESETS))
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    args = parser.parse_args()

    base = load_config(args.config, epochs=args.epochs, seed=args.seed)
    data = build_data(base)
    n_devices = Network(base.network).n_devices
    have_tables = (args.data_dir / "TaOx_all_1_dG_increasing.txt.gz").is_file() and (
        args.data_dir / "ENODe_dG_increasing.txt.gz"
    ).is_file()
    results, skipped = [], []
    for preset in args.presets:
        if preset in MEASURED and not have_tables:
            note = f"{preset}: skipped, measured tables not found in {args.data_dir}"
            print(note, file=sys.stderr)
            skipped.append(note)
            continue
        for strategy in args.strategies:
            result = Run(run_config(base, preset, strategy, args.data_dir)).execute()
            history, seconds = result.history, result.seconds
            last = history[-1]
            pulses = sum(m.pulses for m in history)
            row = {
                "device": preset,
                "programming": strategy,
                "test_accuracy": round(last.test_accuracy, 4),
                "train_accuracy": round(last.train_accuracy, 4),
                "best_test_accuracy": round(max(m.test_accuracy for m in history), 4),
                "pulses_per_device": round(pulses / n_devices, 1),
                "reads_per_device": round(sum(m.reads for m in history) / n_devices, 1),
                "residual_rms_uS": round(1e6 * last.residual_rms, 4),
                "unconverged": int(sum(m.unconverged for m in history)),
                "seconds": round(seconds, 1),
            }
            print(json.dumps(row), file=sys.stderr, flush=True)
            results.append(row)
    ideal = [r for r in results if r["device"] == "ideal" and r["programming"] == "open_loop"]
    print(
        json.dumps(
            {
                "dataset": data.name,
                "epochs": args.epochs,
                "seed": base.training.seed,
                "ideal_test_accuracy": ideal[0]["test_accuracy"] if ideal else None,
                "write_verify": {p: WRITE_VERIFY[p] for p in args.presets},
                "skipped": skipped,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
