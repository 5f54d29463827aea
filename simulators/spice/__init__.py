"""SPICE back ends for the circuit simulator.

:mod:`simulators.spice.ngspice` binds ngspice's shared library (Debian package
``libngspice0``) through ctypes. Importing this package does not load the library; the first
:class:`NgSpice` does, once per process.
"""

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
]
