"""SPICE back ends for the circuit simulator.

:mod:`simulators.spice.library` loads ngspice's shared library (Debian package
``libngspice0``) through ctypes, once per process; :mod:`simulators.spice.ngspice` is a
session on it (netlists, commands, operating points) and :mod:`simulators.spice.output`
turns what ngspice prints into errors and log records; :mod:`simulators.spice.numerics`
holds ngspice's numerical defaults and our tight options; :mod:`simulators.spice.netlist`
writes a circuit's netlist; :mod:`simulators.spice.engine` solves a circuit with them
(``SimulatedBench(engine="spice")``). Importing this package does not load the library; the
first :class:`NgSpice` does, once per process.
"""

from simulators.spice.engine import SpiceEngine
from simulators.spice.library import DEBIAN_PACKAGE
from simulators.spice.netlist import Netlist, write_netlist
from simulators.spice.ngspice import NgSpice
from simulators.spice.numerics import NGSPICE_EPSMIN, NGSPICE_GMIN, TIGHT_OP_OPTIONS
from simulators.spice.output import NgSpiceConvergenceError, NgSpiceError

__all__ = [
    "DEBIAN_PACKAGE",
    "NGSPICE_EPSMIN",
    "NGSPICE_GMIN",
    "TIGHT_OP_OPTIONS",
    "NgSpice",
    "NgSpiceConvergenceError",
    "NgSpiceError",
    "Netlist",
    "SpiceEngine",
    "write_netlist",
]
