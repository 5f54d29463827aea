"""Speed of programming many devices with few pulses each (the device array's hot path).

A :class:`~simulators.devices.DeviceArray` of ReRAM devices receives one request of a few
pulses (-10..10) for every device, repeated; a training step of a large network is such a
request. The device model was meant to stay under 50 ms per request of 5000 devices.

Prints one JSON line last:
{"devices": ..., "repeats": ..., "seconds_per_request": ..., "best_seconds_per_request": ...}
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from simulators.devices import DeviceArray, reram

G_MIN, G_MAX = 1e-7, 1e-5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=10, help="requests timed")
    parser.add_argument("--amplitude", type=float, default=1.5, help="pulse amplitude (V)")
    parser.add_argument("--width", type=float, default=100e-9, help="pulse width (s)")
    args = parser.parse_args()

    array = DeviceArray(reram(G_MIN, G_MAX), args.devices, seed=0)
    ids = np.arange(args.devices)
    counts = np.random.default_rng(0).integers(-10, 11, args.devices)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        array.apply_pulses(ids, counts, args.amplitude, args.width)
        times.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "devices": args.devices,
                "repeats": args.repeats,
                "seconds_per_request": round(sum(times) / len(times), 6),
                "best_seconds_per_request": round(min(times), 6),
            }
        )
    )


if __name__ == "__main__":
    main()
