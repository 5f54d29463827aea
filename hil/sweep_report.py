"""What a sweep found: one row per setting of the grid (mean and spread over its seeds),
and plots of test accuracy against each swept field (PNG, matplotlib's object API).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

from hil.run_files import atomic_write
from hil.store import CellRecord


@dataclass(frozen=True)
class Setting:
    """One setting of the grid over its seeds.

    Attributes
    ----------
    params : dict
        The grid values (``{"training.beta": 0.5, ...}``).
    seeds : tuple of int
    accuracies : tuple of float
        Test accuracy of each finished cell (seed order).
    failed : int
        Cells that failed; ``pending`` counts those not (yet) run.
    mean, std : float or None
        Over the finished cells (``std`` with ``n - 1``; 0 for one cell; None for none).
    """

    params: dict[str, Any]
    seeds: tuple[int, ...]
    accuracies: tuple[float, ...]
    failed: int
    pending: int

    @property
    def mean(self) -> float | None:
        """Mean test accuracy over the finished seeds."""
        return sum(self.accuracies) / len(self.accuracies) if self.accuracies else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation over the finished seeds (0 for one seed)."""
        n, mean = len(self.accuracies), self.mean
        if mean is None:
            return None
        if n < 2:
            return 0.0
        return math.sqrt(sum((a - mean) ** 2 for a in self.accuracies) / (n - 1))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "params": self.params,
            "seeds": list(self.seeds),
            "finished": len(self.accuracies),
            "failed": self.failed,
            "pending": self.pending,
            "mean_test_accuracy": self.mean,
            "std_test_accuracy": self.std,
            "min_test_accuracy": min(self.accuracies) if self.accuracies else None,
            "max_test_accuracy": max(self.accuracies) if self.accuracies else None,
        }


def settings(cells: Sequence[CellRecord]) -> list[Setting]:
    """The cells grouped by their grid values, in grid order."""
    groups: dict[str, list[CellRecord]] = {}
    for cell in cells:
        groups.setdefault(repr(sorted(cell.params.items())), []).append(cell)
    out = []
    for group in groups.values():
        finished = [c for c in group if c.status == "finished" and c.test_accuracy is not None]
        out.append(
            Setting(
                dict(group[0].params),
                tuple(c.seed for c in group),
                tuple(float(c.test_accuracy) for c in finished if c.test_accuracy is not None),
                sum(c.status == "failed" for c in group),
                sum(c.status in ("pending", "running") for c in group),
            )
        )
    return out


def plot_sweep(
    rows: Sequence[Setting], fields: Sequence[str], folder: Path, sweep_id: str
) -> list[Path]:
    """One PNG per swept field: test accuracy against its values, one line per setting of
    the other fields, the spread over seeds as error bars. Returns the paths written.

    Numeric values are placed on a numeric axis; others (device presets, strategies) at
    evenly spaced positions in grid order.
    """
    from matplotlib.figure import Figure

    paths = []
    for field in fields:
        values = _unique(r.params[field] for r in rows)
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        position = {repr(v): (float(v) if numeric else float(i)) for i, v in enumerate(values)}
        others = [f for f in fields if f != field]
        lines: dict[str, list[Setting]] = {}
        for row in rows:
            label = ", ".join(f"{f}={row.params[f]}" for f in others) or "all seeds"
            lines.setdefault(label, []).append(row)
        fig = Figure(figsize=(7, 4.5))
        ax = fig.subplots()
        for label, members in lines.items():
            points = sorted(
                ((position[repr(m.params[field])], m) for m in members if m.mean is not None),
                key=lambda p: p[0],
            )
            if not points:
                continue
            ax.errorbar(
                [x for x, _ in points],
                [100 * (m.mean or 0.0) for _, m in points],
                yerr=[100 * (m.std or 0.0) for _, m in points],
                marker="o",
                capsize=3,
                label=label,
            )
        if not numeric:
            ax.set_xticks(list(position.values()), [str(v) for v in values])
        ax.set(
            xlabel=field,
            ylabel="test accuracy (%)",
            title=f"{sweep_id}: mean and spread over seeds",
        )
        ax.grid(alpha=0.3)
        if len(lines) > 1 or others:
            ax.legend(fontsize="small")
        fig.tight_layout()
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", field)
        path = Path(folder) / f"{sweep_id}-{name}.png"
        paths.append(atomic_write(path, partial(_save_png, fig)))
    return paths


def _save_png(fig: Any, file: IO[bytes]) -> None:
    fig.savefig(file, format="png", dpi=100)


def _unique(values: Any) -> list[Any]:
    seen: dict[str, Any] = {}
    for v in values:
        seen.setdefault(repr(v), v)
    return list(seen.values())
