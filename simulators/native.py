"""Fast batched DC solver for a layered resistive network.

The steady state of the circuit minimises a convex energy (the co-content, see
:mod:`simulators.circuit`). The solver only sees its local coefficients
(:class:`~simulators.circuit.EnergyTerms`):

* ideal diodes: the energy is a quadratic on a box, solved exactly by a primal-dual
  active-set method (each iteration: fix the clamped nodes, solve the linear system, release
  nodes whose diode would conduct backwards, clamp nodes beyond a bound);
* Shockley diodes: Newton's method with a backtracking (Armijo) line search on the energy,
  started from the ideal-diode solution or from a warm start.

The Hessian of a layered network is block tridiagonal (a layer couples only to its
neighbours) and the first block is diagonal, so each linear solve is a batched block Thomas
elimination costing ``sum_t n_t * n_{t+1}**2`` per sample, not ``n**3``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil.errors import ConvergenceError
from hil.numerics import DEFAULT_BLAS_THREADS, blas_threads
from simulators.circuit import Circuit, EnergyTerms, clamp_diodes

# Relative weight of the penalty that pins clamped nodes to their bound in a linear solve.
_PIN = 1e12


@dataclass
class Solution:
    """Free-node voltages of a solve.

    Attributes
    ----------
    layers : list of ndarray, each (B, n_t)
        Voltages of every free layer (hidden layers then outputs), volts.
    iterations : int
        Active-set or Newton iterations used (the maximum over the batch).
    residual : float
        Largest current imbalance at any free node after the solve (A).
    """

    layers: list[np.ndarray]
    iterations: int
    residual: float


def solve_block_tridiagonal(
    diag: list[np.ndarray], coupling: list[np.ndarray], rhs: list[np.ndarray]
) -> list[np.ndarray]:
    """Solve ``H x = rhs`` for a batch of symmetric block-tridiagonal matrices.

    Parameters
    ----------
    diag : list of ndarray, each (B, n_t)
        Diagonal of each diagonal block (the blocks themselves are diagonal).
    coupling : list of ndarray, each (n_t, n_{t+1})
        ``H[t, t+1] = -coupling[t]`` (shared by the batch).
    rhs : list of ndarray, each (B, n_t)
    """
    schur: np.ndarray = diag[0]  # (B, n_0) while diagonal, then (B, n, n)
    z = rhs[0]
    forward = []
    for t, c in enumerate(coupling):
        if schur.ndim == 2:
            inv_c = c[None, :, :] / schur[:, :, None]
            inv_z = z / schur
        else:
            both = np.linalg.solve(
                schur,
                np.concatenate([np.broadcast_to(c, (len(z), *c.shape)), z[:, :, None]], axis=2),
            )
            inv_c, inv_z = both[:, :, :-1], both[:, :, -1]
        forward.append((inv_c, inv_z))
        schur = -np.matmul(c.T, inv_c)
        idx = np.arange(schur.shape[1])
        schur[:, idx, idx] += diag[t + 1]
        z = rhs[t + 1] + inv_z @ c
    if schur.ndim == 2:
        x = z / schur
    else:
        x = np.linalg.solve(schur, z[:, :, None])[:, :, 0]
    out = [x]
    for inv_c, inv_z in reversed(forward):
        x = inv_z + np.matmul(inv_c, x[:, :, None])[:, :, 0]
        out.append(x)
    return out[::-1]


class NativeSolver:
    """Batched DC operating point of a :class:`~simulators.circuit.Circuit`.

    Parameters
    ----------
    circuit : Circuit
    tol_current : float
        Largest current imbalance at a free node accepted as equilibrium (A).
    max_iterations : int
        Cap on active-set or Newton iterations; beyond it the solve raises
        :class:`~hil.errors.ConvergenceError` naming the samples that did not settle.
    blas_threads : int or None
        Threads BLAS may use during a solve (None: as the process has it). One by default:
        a training batch's products are far too small to share (:mod:`hil.numerics`).

    Notes
    -----
    The drive of the sources (``U @ drive``, a ``(B, 1570) @ (1570, 100)`` product at the
    founding paper's size) is kept from one solve to the next while the sources and the
    conductances stay the same: the two nudged phases of an EqProp step re-settle the free
    phase's inputs and reuse it.
    """

    def __init__(
        self,
        circuit: Circuit,
        tol_current: float = 1e-14,
        max_iterations: int = 200,
        blas_threads: int | None = DEFAULT_BLAS_THREADS,
    ) -> None:
        self.circuit = circuit
        self.tol_current = tol_current
        self.max_iterations = max_iterations
        self.blas_threads = blas_threads
        # (energy terms, sources, their drive of every layer) of the last solve
        self._drive: tuple[EnergyTerms, np.ndarray, list[np.ndarray]] | None = None

    # --- public -------------------------------------------------------------------------
    def update_conductances(self, device_ids: np.ndarray | None = None) -> None:
        """Take note that conductances of the circuit changed (all, or ``device_ids``)."""
        self.circuit.invalidate()

    def solve(
        self,
        sources: np.ndarray,
        nudges: np.ndarray | None = None,
        initial: list[np.ndarray] | None = None,
    ) -> Solution:
        """Settle a batch.

        Parameters
        ----------
        sources : ndarray, shape (B, n_sources)
            Voltages of every source node (inputs and biases), V.
        nudges : ndarray, shape (B, n_output_nodes), optional
            Currents injected into the output nodes, A (zero if omitted).
        initial : list of ndarray, optional
            Warm start: free-layer voltages from a previous solve of the same batch.
        """
        with blas_threads(self.blas_threads):
            terms = self.circuit.energy_terms()
            const = self._constant_terms(terms, sources, nudges)
            if self.circuit.network.spec.diode.model == "ideal":
                return self._solve_ideal(terms, const, initial, strict=True)
            if initial is None:
                # The hard-clamp equilibrium is a good start for Newton on Shockley diodes.
                initial = self._solve_ideal(terms, const, None, strict=False).layers
            return self._solve_shockley(terms, const, [v.copy() for v in initial])

    # --- pieces -------------------------------------------------------------------------
    def _constant_terms(
        self, terms: EnergyTerms, sources: np.ndarray, nudges: np.ndarray | None
    ) -> list[np.ndarray]:
        cached = self._drive
        if cached is not None and cached[0] is terms and np.array_equal(cached[1], sources):
            drive = cached[2]  # the same product of the same operands
        else:
            drive = [
                sources[:, rows] @ d for rows, d in zip(terms.drive_rows, terms.drive, strict=True)
            ]
            self._drive = (terms, np.array(sources, dtype=float), drive)
        const = list(drive)  # the solver never writes into these arrays
        if nudges is not None:
            const[-1] = const[-1] + terms.weight[-1] * nudges
        return const

    def _linear_gradient(
        self, terms: EnergyTerms, const: list[np.ndarray], v: list[np.ndarray]
    ) -> list[np.ndarray]:
        grad = [terms.diag[t] * v[t] - const[t] for t in range(len(v))]
        for t, c in enumerate(terms.coupling):
            grad[t] -= v[t + 1] @ c.T
            grad[t + 1] -= v[t] @ c
        return grad

    def _residual(self, terms: EnergyTerms, grad: list[np.ndarray]) -> np.ndarray:
        """Largest physical current imbalance per sample (A), shape (B,)."""
        return np.max(
            np.stack([np.abs(g / w).max(axis=1) for g, w in zip(grad, terms.weight, strict=True)]),
            axis=0,
        )

    def _solve_ideal(
        self,
        terms: EnergyTerms,
        const: list[np.ndarray],
        initial: list[np.ndarray] | None,
        strict: bool,
    ) -> Solution:
        """Primal-dual active set; ``strict=False`` returns the last iterate on failure."""
        diode = self.circuit.network.spec.diode
        lo, hi = diode.v_low, diode.v_high
        batch = len(const[0])
        if initial is None:
            high = [np.zeros((batch, len(d)), bool) for d in terms.diag]
            low = [np.zeros((batch, len(d)), bool) for d in terms.diag]
        else:
            high = [(v >= hi) & c for v, c in zip(initial, terms.clamped, strict=True)]
            low = [(v <= lo) & c for v, c in zip(initial, terms.clamped, strict=True)]
        for iteration in range(1, self.max_iterations + 1):
            v = self._pinned_solve(terms, const, high, low, lo, hi)
            grad = self._linear_gradient(terms, const, v)
            changed = np.zeros(batch, bool)
            for t, clamped in enumerate(terms.clamped):
                if not clamped:
                    continue
                new_high = (high[t] & (grad[t] <= 0)) | (~high[t] & ~low[t] & (v[t] > hi))
                new_low = (low[t] & (grad[t] >= 0)) | (~high[t] & ~low[t] & (v[t] < lo))
                changed |= np.any((new_high != high[t]) | (new_low != low[t]), axis=1)
                high[t], low[t] = new_high, new_low
            if not changed.any():
                free = [~(h | lw) for h, lw in zip(high, low, strict=True)]
                residual = self._residual(terms, [g * f for g, f in zip(grad, free, strict=True)])
                if strict:
                    self._check(residual, iteration)
                return Solution(v, iteration, float(residual.max()))
        if not strict:
            return Solution(v, self.max_iterations, float("nan"))
        bad = np.flatnonzero(changed)
        raise ConvergenceError(
            f"active-set solve did not settle for sample(s) {bad[:10].tolist()} within "
            f"{self.max_iterations} iterations"
        )

    def _pinned_solve(
        self,
        terms: EnergyTerms,
        const: list[np.ndarray],
        high: list[np.ndarray],
        low: list[np.ndarray],
        lo: float,
        hi: float,
    ) -> list[np.ndarray]:
        """Solve the linear system with clamped nodes pinned to their bound."""
        diag, rhs = [], []
        for t, d in enumerate(terms.diag):
            pin = _PIN * d.max()
            pinned = high[t] | low[t]
            diag.append(d + pin * pinned)
            rhs.append(const[t] + pin * (hi * high[t] + lo * low[t]))
        v = solve_block_tridiagonal(diag, terms.coupling, rhs)
        for t in range(len(v)):
            v[t] = np.where(high[t], hi, np.where(low[t], lo, v[t]))
        return v

    def _diode_terms(self, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Co-content, current and conductance of a node's two Shockley diodes."""
        return clamp_diodes(v, self.circuit.network.spec.diode)

    def _energy(
        self, terms: EnergyTerms, const: list[np.ndarray], v: list[np.ndarray]
    ) -> np.ndarray:
        total = np.zeros(len(v[0]))
        for t, vt in enumerate(v):
            total += (0.5 * terms.diag[t] * vt**2 - const[t] * vt).sum(axis=1)
            if terms.clamped[t]:
                total += terms.weight[t] * self._diode_terms(vt)[0].sum(axis=1)
        for t, c in enumerate(terms.coupling):
            total -= np.einsum("bi,bi->b", v[t] @ c, v[t + 1])
        return total

    def _gradient_and_curvature(
        self, terms: EnergyTerms, const: list[np.ndarray], v: list[np.ndarray]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        grad = self._linear_gradient(terms, const, v)
        curv = [np.broadcast_to(d, g.shape).copy() for d, g in zip(terms.diag, grad, strict=True)]
        for t, vt in enumerate(v):
            if terms.clamped[t]:
                _, current, conductance = self._diode_terms(vt)
                grad[t] += terms.weight[t] * current
                curv[t] += terms.weight[t] * conductance
        return grad, curv

    def _solve_shockley(
        self, terms: EnergyTerms, const: list[np.ndarray], v: list[np.ndarray]
    ) -> Solution:
        energy = self._energy(terms, const, v)
        for iteration in range(1, self.max_iterations + 1):
            grad, curv = self._gradient_and_curvature(terms, const, v)
            residual = self._residual(terms, grad)
            if residual.max() <= self.tol_current:
                return Solution(v, iteration, float(residual.max()))
            step = solve_block_tridiagonal(curv, terms.coupling, [-g for g in grad])
            slope = sum(np.einsum("bi,bi->b", g, s) for g, s in zip(grad, step, strict=True))
            v, energy = self._line_search(terms, const, v, step, energy, slope, residual)
        self._check(
            self._residual(terms, self._gradient_and_curvature(terms, const, v)[0]),
            self.max_iterations,
        )
        return Solution(v, self.max_iterations, 0.0)

    def _line_search(
        self,
        terms: EnergyTerms,
        const: list[np.ndarray],
        v: list[np.ndarray],
        step: list[np.ndarray],
        energy: np.ndarray,
        slope: np.ndarray,
        residual: np.ndarray,
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Backtrack per sample until the energy decreases enough (Armijo)."""
        alpha = np.ones(len(energy))
        # Close to equilibrium the energy change is below rounding: take the Newton step.
        accept = residual < 1e3 * self.tol_current
        for _ in range(60):
            trial = [vt + alpha[:, None] * s for vt, s in zip(v, step, strict=True)]
            new_energy = self._energy(terms, const, trial)
            # Near equilibrium the decrease is below the rounding of the energy sum: a full
            # Newton step that does not raise the energy beyond that rounding is taken.
            rounding = 1e-12 * np.abs(energy) * (alpha == 1.0)
            accept |= new_energy <= energy + 1e-4 * alpha * slope + rounding
            if accept.all():
                break
            alpha = np.where(accept, alpha, 0.5 * alpha)
        else:
            trial = [vt + alpha[:, None] * s for vt, s in zip(v, step, strict=True)]
            new_energy = self._energy(terms, const, trial)
        return trial, new_energy

    def _check(self, residual: np.ndarray, iterations: int) -> None:
        bad = np.flatnonzero(~(residual <= self.tol_current))
        if bad.size:
            raise ConvergenceError(
                f"solve did not reach equilibrium for sample(s) {bad[:10].tolist()} after "
                f"{iterations} iterations: largest current imbalance {residual[bad].max():.3g} A"
                f" (tolerance {self.tol_current:g} A)"
            )
