"""Compile feature expressions into one DAG evaluated in topological order.

Identical sub-expressions (same operator, parameters and inputs) become one
node, so ``Ref(close, 1)`` is computed once however many features use it. The
same compiled program is run by the batch evaluator (``run_batch``, whole
panels) and the incremental one (``step``, one bar per symbol slot, through
its flat schedule ``plan``: one compiled call per update, see ``plan.py``).
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from .ops import Const, Field, Op
from .plan import StateTable, StepPlan


class Program:
    """A topologically ordered, de-duplicated list of expression nodes."""

    def __init__(self, exprs: dict[str, Op]):
        self.nodes: list[Op] = []
        self.children: list[tuple[int, ...]] = []
        index: dict[tuple, int] = {}

        def visit(node: Op) -> int:
            k = node.key
            if k in index:
                return index[k]
            kids = tuple(visit(ch) for ch in node.children)
            index[k] = len(self.nodes)
            self.nodes.append(node)
            self.children.append(kids)
            return index[k]

        self.outputs: dict[str, int] = {name: visit(e) for name, e in exprs.items()}
        self.output_names = list(exprs)
        self.fields = sorted({n.params[0] for n in self.nodes if isinstance(n, Field)})
        # last consumer of each node, to free batch intermediates early
        keep = set(self.outputs.values())
        self._last_use = {}
        for i, kids in enumerate(self.children):
            for k in kids:
                self._last_use[k] = i
        self._free_after: dict[int, list[int]] = {}
        for k, i in self._last_use.items():
            if k not in keep:
                self._free_after.setdefault(i, []).append(k)
        self.stateful = [i for i, n in enumerate(self.nodes) if n.state_fields()]
        self._plan: StepPlan | None = None

    @functools.cached_property
    def hash(self) -> str:
        """Identity of the expressions (computed once: the nodes are fixed after construction;
        ``repr`` of the whole DAG costs ~1 ms, once per snapshotted symbol before this was cached)."""
        h = hashlib.sha256()
        for name in self.output_names:
            h.update(f"{name}={self.nodes[self.outputs[name]]!r};".encode())
        return h.hexdigest()[:16]

    # -- batch ---------------------------------------------------------------
    def run_batch(self, inputs: dict[str, np.ndarray], progress=None) -> dict[str, np.ndarray]:
        """Evaluate every node over ``(L, N)`` panels; return the outputs by name."""
        vals: dict[int, np.ndarray] = {}
        for i, node in enumerate(self.nodes):
            if isinstance(node, Field):
                vals[i] = inputs[node.params[0]]
            elif isinstance(node, Const):
                vals[i] = node.batch()
            else:
                vals[i] = node.batch(*(vals[k] for k in self.children[i]))
            for k in self._free_after.get(i, ()):
                vals.pop(k, None)
            if progress is not None:
                progress(1)
        return {name: np.broadcast_to(vals[idx], next(iter(inputs.values())).shape)
                for name, idx in self.outputs.items()}

    # -- incremental -----------------------------------------------------------
    @property
    def plan(self) -> StepPlan:
        """The flat incremental schedule (inputs in ``self.fields`` order)."""
        if self._plan is None:
            self._plan = StepPlan.of_program(self)
        return self._plan

    def init_state(self, n_slots: int) -> StateTable:
        """Fresh state rows for ``n_slots`` symbol slots."""
        return StateTable(self.plan, n_slots)

    def step(self, states: StateTable, rows: np.ndarray, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Feed one bar to each slot in ``rows``; return a (len(rows), n_outputs) matrix."""
        rows = np.asarray(rows, dtype=np.intp)
        X = np.empty((len(rows), len(self.fields)))
        for j, name in enumerate(self.fields):
            X[:, j] = inputs[name]
        return self.plan.run(states.F, states.I, rows, X)
