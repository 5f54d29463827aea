"""SPICE back ends for the circuit simulator.

:mod:`simulators.spice.ngspice` binds ngspice's shared library (Debian package
``libngspice0``) through ctypes; :mod:`simulators.spice.netlist` writes a circuit's netlist;
:mod:`simulators.spice.engine` solves a circuit with them (``SimulatedBench(engine="spice")``).
Importing this package does not load the library; the first :class:`NgSpice` does, once per
process.
"""

from simulators.spice.engine import SpiceEngine
from simulators.spice.netlist import Netlist, write_netlist
from simulators.spice.ngspice import (
    DEBIAN_PACKAGE,
    NGSPICE_BOLTZMANN,
    NGSPICE_CHARGE,
    NGSPICE_EPSMIN,
    NGSPICE_GMIN,
    NGSPICE_TEMPERATURE,
    TIGHT_OP_OPTIONS,
    NgSpice,
    NgSpiceConvergenceError,
    NgSpiceError,
)

__all__ = [
    "DEBIAN_PACKAGE",
    "NGSPICE_BOLTZMANN",
    "NGSPICE_CHARGE",
    "NGSPICE_EPSMIN",
    "NGSPICE_GMIN",
    "NGSPICE_TEMPERATURE",
    "TIGHT_OP_OPTIONS",
    "NgSpice",
    "NgSpiceConvergenceError",
    "NgSpiceError",
    "Netlist",
    "SpiceEngine",
    "write_netlist",
]
