"""A program's incremental schedule as flat arrays, and the state rows it updates.

``StepPlan`` turns topologically ordered expression nodes into the arrays the
compiled ``kernels.run_plan`` loop reads: one opcode, up to two child indices,
an integer and a float parameter, and the offsets of the node's state in a
slot's float and int rows. The schedule is computed once; an update is then a
single compiled call, whatever the number of symbols in it.

``StateTable`` holds the state of every symbol slot of one plan
(struct of arrays: ``F`` float64 ``(slots, plan.nf)``, ``I`` int64
``(slots, plan.ni)``). A slot's state is exactly its two rows, so it
serializes as their bytes (see ``FeatureEngine.get_state``).

Nodes are duck-typed: each has ``opcode``, ``kernel_params()`` and
``state_fields()`` (``ops.py``); a ``Field`` node's value comes from the input
column named by its first parameter.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple, Sequence

import numpy as np

from . import kernels as K


class StateField(NamedTuple):
    """One piece of an operator's per-slot state, in kernel layout order.

    ``kind`` is ``"f"`` (float64) or ``"i"`` (int64); ``width`` 0 is one
    scalar per slot (a ``(slots,)`` array in the operator's own state dict),
    ``width`` >= 1 a buffer (``(slots, width)``).
    """

    name: str
    kind: str
    fill: float
    width: int = 0

    @property
    def size(self) -> int:
        return max(self.width, 1)


class StepPlan:
    """Flat, precomputed schedule of one program for ``kernels.run_plan``."""

    def __init__(self, nodes: Sequence, children: Sequence[tuple[int, ...]], outputs: Sequence[int],
                 fields: Sequence[str]):
        n = len(nodes)
        column = {name: j for j, name in enumerate(fields)}
        self.fields = list(fields)
        self.code = np.empty(n, np.int64)
        self.ch0 = np.zeros(n, np.int64)
        self.ch1 = np.zeros(n, np.int64)
        self.ip = np.zeros(n, np.int64)
        self.fp = np.zeros(n, np.float64)
        self.fo = np.zeros(n, np.int64)
        self.io = np.zeros(n, np.int64)
        f_init: list[float] = []
        i_init: list[int] = []
        layout = []
        for j, (node, kids) in enumerate(zip(nodes, children)):
            if node.opcode < 0:
                raise TypeError(f"{node!r}: operator {type(node).__name__} declares no step kernel (opcode)")
            self.code[j] = node.opcode
            if kids:
                self.ch0[j] = kids[0]
                self.ch1[j] = kids[-1]
            if node.opcode == K.FIELD:
                name = node.params[0]
                if name not in column:
                    raise KeyError(f"input field {name!r} is not among the plan's inputs {list(fields)}")
                self.ip[j] = column[name]
            else:
                self.ip[j], self.fp[j] = node.kernel_params()
            self.fo[j], self.io[j] = len(f_init), len(i_init)
            for sf in node.state_fields():
                (f_init if sf.kind == "f" else i_init).extend([sf.fill] * sf.size)
                layout.append(f"{j}:{sf.name}:{sf.kind}{sf.size}")
        self.outs = np.asarray(outputs, np.int64)
        self.f_init = np.array(f_init, np.float64)
        self.i_init = np.array(i_init, np.int64)
        self.nf, self.ni = len(f_init), len(i_init)
        self.layout_hash = hashlib.sha256(";".join(layout).encode()).hexdigest()[:16]

    @classmethod
    def of_program(cls, program, fields: Sequence[str] | None = None) -> "StepPlan":
        """The plan of a ``Program``; inputs in ``fields`` order (default: ``program.fields``)."""
        outs = list(program.outputs.values())
        return cls(program.nodes, program.children, outs, program.fields if fields is None else fields)

    def run(self, F: np.ndarray, I: np.ndarray, rows: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Feed ``X[r]`` (one value per input field) to slot ``rows[r]`` of the state rows
        ``F``/``I`` (updated in place); return the (k, n_outputs) values."""
        rows = np.ascontiguousarray(rows, dtype=np.intp)
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.shape != (len(rows), len(self.fields)):
            raise ValueError(f"inputs of shape {X.shape}; expected ({len(rows)}, {len(self.fields)}) "
                             f"(one row per slot, columns {self.fields})")
        if F.shape[1] != self.nf or I.shape[1] != self.ni or F.shape[0] != I.shape[0]:
            raise ValueError(f"state rows {F.shape}/{I.shape} do not fit this plan ({self.nf} floats, {self.ni} ints)")
        if len(rows) and (rows.min() < 0 or rows.max() >= F.shape[0]):
            raise IndexError(f"slot rows outside 0..{F.shape[0] - 1}")
        out = np.empty((len(rows), len(self.outs)))
        K.run_plan(self.code, self.ch0, self.ch1, self.ip, self.fp, self.fo, self.io, self.outs, F, I, rows, X, out)
        return out


class StateTable:
    """The state rows of a plan for a growable number of symbol slots."""

    def __init__(self, plan: StepPlan, capacity: int):
        self.plan = plan
        self.F = np.tile(plan.f_init, (capacity, 1))
        self.I = np.tile(plan.i_init, (capacity, 1))

    @property
    def capacity(self) -> int:
        return self.F.shape[0]

    def grow(self, n: int) -> None:
        """Resize to ``n`` slots; new slots get a fresh state."""
        pad = n - self.capacity
        if pad > 0:
            self.F = np.vstack([self.F, np.tile(self.plan.f_init, (pad, 1))])
            self.I = np.vstack([self.I, np.tile(self.plan.i_init, (pad, 1))])

    def row_bytes(self, slot: int) -> bytes:
        """The slot's state as bytes: its float row then its int row, little-endian."""
        return (self.F[slot].astype("<f8", copy=False).tobytes()
                + self.I[slot].astype("<i8", copy=False).tobytes())

    @property
    def row_nbytes(self) -> int:
        return 8 * (self.plan.nf + self.plan.ni)

    def load_row(self, slot: int, blob: bytes | memoryview) -> None:
        """Inverse of ``row_bytes`` (``blob`` is exactly ``row_nbytes`` long)."""
        nf = self.plan.nf
        self.F[slot] = np.frombuffer(blob, dtype="<f8", count=nf)
        self.I[slot] = np.frombuffer(blob, dtype="<i8", count=self.plan.ni, offset=8 * nf)


# ---------------------------------------------------------------------------
# an operator's own state dict <-> state rows (the single-operator step form)
# ---------------------------------------------------------------------------
def init_state_dict(fields: Sequence[StateField], n: int) -> dict[str, np.ndarray]:
    """Fresh per-operator state: one named array per field, leading dimension = slots."""
    return {sf.name: np.full((n,) if sf.width == 0 else (n, sf.width), sf.fill,
                             dtype=np.float64 if sf.kind == "f" else np.int64) for sf in fields}


def pack_rows(fields: Sequence[StateField], state: dict, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gather the state of slots ``idx`` into (F, I) rows in kernel layout."""
    k = len(idx)
    fs = [state[sf.name][idx].reshape(k, sf.size) for sf in fields if sf.kind == "f"]
    is_ = [state[sf.name][idx].reshape(k, sf.size) for sf in fields if sf.kind == "i"]
    F = np.hstack(fs) if fs else np.empty((k, 0))
    I = np.hstack(is_) if is_ else np.empty((k, 0), np.int64)
    return np.ascontiguousarray(F, np.float64), np.ascontiguousarray(I, np.int64)


def unpack_rows(fields: Sequence[StateField], state: dict, idx: np.ndarray, F: np.ndarray, I: np.ndarray) -> None:
    """Scatter (F, I) rows back into the state of slots ``idx``."""
    off = {"f": 0, "i": 0}
    for sf in fields:
        src = F if sf.kind == "f" else I
        a = off[sf.kind]
        block = src[:, a:a + sf.size]
        state[sf.name][idx] = block[:, 0] if sf.width == 0 else block
        off[sf.kind] = a + sf.size
