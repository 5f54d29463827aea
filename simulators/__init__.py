"""The simulated back ends: device models, circuits and their solvers, the simulated bench
(:mod:`simulators.bench`) and the emulated lab instruments (:mod:`simulators.instruments`)."""
