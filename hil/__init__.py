"""hil-eqprop: train analog memristor networks with Equilibrium Propagation in the loop.

The package is layered, each layer importing only those below it (checked by
import-linter, see ``pyproject.toml``):

- device layer: :mod:`hil.vocabulary`, :mod:`hil.errors`, :mod:`hil.network`,
  :mod:`hil.bench` (the Bench protocol and the values that cross it);
- learning: :mod:`hil.events`, :mod:`hil.eqprop`, :mod:`hil.programming`, :mod:`hil.data`,
  :mod:`hil.trainer`, and the run's files (:mod:`hil.run_files`, :mod:`hil.plots`);
- config schemas: :mod:`hil.config`;
- the back ends, outside this package: ``simulators`` and ``drivers``;
- the composition root: :mod:`hil.composition` (configs -> benches and trainers) and
  :mod:`hil.run` (one experiment end to end);
- the command line: :mod:`hil.progress`, :mod:`hil.cli`.
"""
