"""Memory of re-solving one circuit many times through the ngspice binding.

ngspice keeps a record of every command it runs and never frees it; the binding frees it
after every command (:meth:`simulators.spice.library.NgSpiceLibrary.command`). This script
loads a two-diode circuit, warms the allocator pools, then runs ``alter`` + ``op`` many
times and reports how much the process's resident set grew (unmitigated, 10000 solves
would keep about 7 MB of command records; the binding is meant to stay under 2 MB).

Prints one JSON line last:
{"solves": ..., "rss_growth_bytes": ..., "rss_growth_bytes_per_solve": ..., "plots_left": [...]}
"""

from __future__ import annotations

import argparse
import json
import os

from simulators.spice import NgSpice

#: Two diodes of different models, a current source and a DC path from every node to ground.
TWO_DIODE_NET = [
    "two diodes",
    "v1 in 0 dc 2",
    "r1 in a 1k",
    "d1 a b dm",
    "r2 b 0 2k",
    "d2 b 0 dm2",
    "r3 a 0 10k",
    "i1 0 b dc 0.1m",
    ".model dm D(IS=1e-14 N=1)",
    ".model dm2 D(IS=1e-12 N=2)",
]


def rss_bytes() -> int:
    """Resident set size of this process (bytes), from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solves", type=int, default=10000, help="alter + op after warm-up")
    parser.add_argument("--warmup", type=int, default=500, help="solves before measuring")
    args = parser.parse_args()

    sim = NgSpice()
    sim.load_circuit(TWO_DIODE_NET)
    for i in range(args.warmup):  # allocator pools reach their steady size first
        sim.alter("v1", i * 1e-3, "dc")
        sim.run_op()
    before = rss_bytes()
    for i in range(args.solves):
        sim.alter("v1", i * 1e-4, "dc")
        sim.run_op()
    growth = rss_bytes() - before
    plots = sim.plots()
    sim.reset()
    print(
        json.dumps(
            {
                "ngspice_version": sim.version,
                "solves": args.solves,
                "rss_growth_bytes": growth,
                "rss_growth_bytes_per_solve": round(growth / max(args.solves, 1), 2),
                "plots_left": plots,
            }
        )
    )


if __name__ == "__main__":
    main()
