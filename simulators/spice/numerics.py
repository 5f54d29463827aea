"""ngspice's numerical settings: the defaults its device models use, and our tight options.

The defaults were established by backing them out of solved operating points of ngspice 39
(tests/simulators/test_ngspice.py checks each one); the physical constants ngspice uses are
:data:`hil.vocabulary.BOLTZMANN`, :data:`~hil.vocabulary.ELEMENTARY_CHARGE` and
:data:`~hil.vocabulary.NOMINAL_TEMPERATURE`, shared with the native solver.
"""

from __future__ import annotations

#: An ``.options`` line that makes ngspice's operating point agree with an exact Newton
#: solution to ~1e-15 V (tests/simulators/test_ngspice.py; with the defaults the error
#: reaches ~1e-5 V).
#: Newton stops only when every node moves less than ``reltol * |v| + vntol`` and every
#: device current is converged to ``reltol * |i| + abstol``; quadratic convergence then
#: leaves the last iterate far more accurate than that. Device bypass is off so no device
#: reuses a stale linearisation, and ``itl1`` gives Newton room before gmin stepping starts.
#: ``gmin`` stays at ngspice's default on purpose: it is part of the device models.
TIGHT_OP_OPTIONS = ".options reltol=1e-9 abstol=1e-15 vntol=1e-12 bypass=0 itl1=500"

#: Default ``gmin`` (S): diodes add ``gmin * vd`` in parallel with the junction current;
#: ``.options gmin=...`` changes it for every diode.
NGSPICE_GMIN = 1e-12
#: Default ``epsmin``: a diode's saturation current IS is raised to at least this value.
NGSPICE_EPSMIN = 1e-28
