"""Compile feature expressions into one DAG evaluated in topological order.

Identical sub-expressions (same operator, parameters and inputs) become one
node, so ``Ref(close, 1)`` is computed once however many features use it. The
same compiled program is run by the batch evaluator (``run_batch``, whole
panels) and the incremental one (``step``, one bar per symbol slot).
"""

from __future__ import annotations

import hashlib

import numpy as np

from .ops import Const, Field, Op


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
        self.stateful = [i for i, n in enumerate(self.nodes) if n.init_state(1)]

    @property
    def hash(self) -> str:
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
    def init_state(self, n_slots: int) -> list[dict[str, np.ndarray]]:
        return [node.init_state(n_slots) for node in self.nodes]

    def step(self, states: list[dict], rows: np.ndarray, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Feed one bar to each slot in ``rows``; return a (len(rows), n_outputs) matrix."""
        vals: list[np.ndarray | None] = [None] * len(self.nodes)
        k = len(rows)
        if k and rows[-1] - rows[0] == k - 1 and (k == 1 or np.all(np.diff(rows) == 1)):
            rows = slice(int(rows[0]), int(rows[-1]) + 1)  # contiguous slots: views, not gathers
        for i, node in enumerate(self.nodes):
            if isinstance(node, Field):
                vals[i] = inputs[node.params[0]]
            elif isinstance(node, Const):
                vals[i] = np.full(k, node.params[0])
            else:
                vals[i] = node.step(states[i], rows, *(vals[j] for j in self.children[i]))
        out = np.empty((k, len(self.outputs)))
        for j, idx in enumerate(self.outputs.values()):
            out[:, j] = vals[idx]
        return out


def grow_states(states: list[dict[str, np.ndarray]], programs_nodes: list[Op], new_n: int) -> list[dict]:
    """Return states resized to ``new_n`` slots (new slots get a fresh state)."""
    out = []
    for st, node in zip(states, programs_nodes):
        if not st:
            out.append(st)
            continue
        fresh = node.init_state(new_n)
        for key, arr in st.items():
            fresh[key][: arr.shape[0]] = arr
        out.append(fresh)
    return out
