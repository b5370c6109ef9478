"""What the solver answers: the chosen network (:class:`Selection`) or why no network fits
(:class:`Infeasible`), and the wording of budgets and costs in that answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ponas.units import budget_name, format_budget, format_cost


class Infeasible(ValueError):
    """No network in the table meets the budgets; the message gives the smallest reachable cost.

    ``kind`` is the budget that cannot be met, ``budget`` its value and ``smallest`` the
    smallest ``kind`` cost reachable (within the other budgets, when several were given).
    """

    def __init__(self, message: str, kind: str, budget: float, smallest: float) -> None:
        super().__init__(message)
        self.kind = kind
        self.budget = budget
        self.smallest = smallest


@dataclass
class Selection:
    """A chosen network: one candidate per layer, its table score, loss and costs.

    ``score`` is ``sum_l A[l][c_l]``, ``loss`` is ``sum_l (max A[l] - A[l][c_l])`` and
    ``cost`` holds ``base + sum_l cost[l][c_l]`` for every cost kind of the table (integers
    for MACs and params). ``indices`` are the chosen columns of the table. ``score_stderr``
    is the score's standard error (:meth:`AccuracyTable.score_stderr`), ``None`` when the
    table does not record the errors of all the chosen entries.
    """

    choices: list[str]
    indices: list[int]
    score: float
    loss: float
    cost: dict[str, float]
    score_stderr: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"choices", "score", "score_stderr", "loss", "cost"}``: what ``ponas deploy
        --json`` prints."""
        return {
            "choices": list(self.choices),
            "score": self.score,
            "score_stderr": self.score_stderr,
            "loss": self.loss,
            "cost": dict(self.cost),
        }


def budgets_text(kinds: list[str], budgets: dict[str, float]) -> str:
    """The budgets of ``kinds`` as a user writes them, joined for a message (``a, b and c``)."""
    parts = [f"{budget_name(k)}={format_budget(budgets[k])}" for k in kinds]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def distinct_cost(kind: str, smallest: float, budget: float) -> str:
    """``smallest`` for people, with every digit when three would print it as the budget."""
    shown = format_cost(kind, smallest)
    if shown == format_cost(kind, budget):
        shown = format_cost(kind, smallest, precise=True)
    return shown
