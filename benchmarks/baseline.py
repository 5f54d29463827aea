"""EqProp on the default simulated bench vs backprop on a software MLP of the same size.

Both see the same stratified split of digits. The MLP has the network's hidden layer size
and a ReLU (scikit-learn's MLPClassifier, Adam). Prints one JSON line last:
{"eqprop_test_accuracy": ..., "backprop_test_accuracy": ..., ...}
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from hil.composition import build_data
from hil.config import load_config
from hil.run import Run

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "bench_configs" / "sim-digits.yaml"))
    parser.add_argument("--epochs", type=int, help="override training.epochs (both models)")
    args = parser.parse_args()

    config = load_config(args.config, epochs=args.epochs)
    data = build_data(config)  # the split the run trains on, for the MLP

    result = Run(config).execute()
    history, eqprop_seconds = result.history, result.seconds

    start = time.perf_counter()
    mlp = MLPClassifier(
        hidden_layer_sizes=tuple(config.network.hidden),
        max_iter=200,
        batch_size=config.training.batch_size,
        random_state=config.training.seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(data.x_train, data.y_train)
    backprop_seconds = time.perf_counter() - start

    print(
        json.dumps(
            {
                "dataset": data.name,
                "hidden": config.network.hidden,
                "eqprop_epochs": history[-1].epoch,
                "eqprop_test_accuracy": round(history[-1].test_accuracy, 4),
                "eqprop_train_accuracy": round(history[-1].train_accuracy, 4),
                "eqprop_seconds": round(eqprop_seconds, 1),
                "backprop_test_accuracy": round(float(mlp.score(data.x_test, data.y_test)), 4),
                "backprop_train_accuracy": round(float(mlp.score(data.x_train, data.y_train)), 4),
                "backprop_epochs": int(mlp.n_iter_),
                "backprop_seconds": round(backprop_seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
