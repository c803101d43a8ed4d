"""Feature operators: one definition, two evaluations.

Every operator is a node of an expression DAG and implements two evaluations
of the same maths:

* ``batch(*xs)``: vectorized over a panel. Each input is a 2-D float64 array
  of shape ``(L, N)``: axis 0 is the *bar index of a symbol* (row ``k`` is the
  k-th bar of that symbol, so a window of ``w`` rows is ``w`` bars of the same
  symbol, whatever the calendar), axis 1 the symbols. Columns of shorter
  histories are padded with NaN at the end; every operator is causal, so the
  padding never reaches earlier rows.
* ``step(state, rows, *xs)``: incremental. ``state`` is a dict of arrays whose
  leading dimension is the number of symbol slots (``init_state``, laid out by
  ``state_fields()``); ``rows`` selects the slots that receive one new bar
  each; each ``x`` is a 1-D array aligned with ``rows``. It updates the state
  in place and returns the new values. The step maths are compiled scalar
  kernels (``kernels.py``, selected by ``opcode``), the very code the
  evaluators run for whole programs (``plan.StepPlan``): O(1) per bar for
  elementwise, Ref, Sum/Mean/Std/Var/Cov/Corr/Slope/Skew/EMA operators, an
  O(w) scan for Max/Min/BarsSince/TsRank.

Conventions shared by both evaluations (so they agree):

* Missing inputs are NaN and propagate; a windowed operator returns NaN
  unless all ``w`` most recent inputs are present (pandas ``min_periods=w``).
* Features never carry ``inf``: elementwise results that are not finite
  become NaN (division by zero, log of a non-positive number, ...).

Operators are built with plain Python expressions (``Field("close") /
Ref(Field("close"), 5) - 1``); nothing is ever parsed or ``eval``-ed.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from . import kernels as K
from .plan import StateField, StepPlan, init_state_dict, pack_rows, unpack_rows

State = dict[str, np.ndarray]


def _finite(a: np.ndarray) -> np.ndarray:
    """Replace non-finite values by NaN (in place when possible) and return."""
    a = np.asarray(a, dtype=np.float64)
    if np.isfinite(a).all():
        return a
    a = a.copy() if not a.flags.writeable else a
    a[np.isinf(a)] = np.nan
    return a


def as_index(rows) -> np.ndarray:
    """Slot rows as an integer array (rows may be a contiguous slice)."""
    if isinstance(rows, slice):
        return np.arange(rows.start, rows.stop)
    return rows


def n_rows(rows) -> int:
    return rows.stop - rows.start if isinstance(rows, slice) else len(rows)


def _const(value: object) -> "Op":
    if isinstance(value, Op):
        return value
    if isinstance(value, (int, float, np.floating, np.integer)):
        return Const(float(value))
    raise TypeError(f"cannot use {value!r} ({type(value).__name__}) in a feature expression")


class Op:
    """Base class of expression nodes.

    Subclasses set ``children`` (input nodes) and ``params`` (hashable
    parameters), implement ``batch``, and declare their step form: ``opcode``
    (the kernel in ``kernels.py``), ``kernel_params()`` and ``state_fields()``
    (the per-slot state, in kernel layout order). ``key`` identifies the node
    structurally so that identical sub-expressions are evaluated once.
    """

    name: str = "op"
    opcode: int = -1
    children: tuple["Op", ...] = ()
    params: tuple = ()

    # -- identity --------------------------------------------------------
    @property
    def key(self) -> tuple:
        return (self.name, self.params, tuple(c.key for c in self.children))

    def __repr__(self) -> str:
        args = [repr(c) for c in self.children] + [repr(p) for p in self.params]
        return f"{self.name}({', '.join(args)})"

    @property
    def lookback(self) -> int:
        """Bars of history (including the current one) the value depends on."""
        return max((c.lookback for c in self.children), default=1)

    def fields(self) -> set[str]:
        out: set[str] = set()
        for c in self.children:
            out |= c.fields()
        return out

    # -- evaluation ------------------------------------------------------
    def batch(self, *xs: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_fields(self) -> tuple[StateField, ...]:
        """The per-slot state of the step form, in kernel layout order (none by default)."""
        return ()

    def kernel_params(self) -> tuple[int, float]:
        """The (integer, float) parameter the kernel reads (window, span, exponent, ...)."""
        return 0, 0.0

    def init_state(self, n: int) -> State:
        """Fresh state for ``n`` symbol slots (stateless ops return {})."""
        return init_state_dict(self.state_fields(), n)

    def step(self, state: State, rows, *xs: np.ndarray) -> np.ndarray:
        """One new input per slot in ``rows``: update ``state`` in place, return the values.

        Runs this node alone through the compiled kernel (inputs as plan fields).
        """
        plan = self.__dict__.get("_step_plan")
        if plan is None:
            ins = [Field(f"_in{j}") for j in range(len(self.children))]
            plan = StepPlan(ins + [self], [()] * len(ins) + [tuple(range(len(ins)))], [len(ins)],
                            [f.params[0] for f in ins])
            self._step_plan = plan
        idx = as_index(rows)
        k = len(idx)
        fields = self.state_fields()
        F, I = pack_rows(fields, state, idx)
        X = np.column_stack([np.broadcast_to(np.asarray(x, np.float64), (k,)) for x in xs]) if xs \
            else np.empty((k, 0))
        out = plan.run(F, I, np.arange(k), X)[:, 0]
        unpack_rows(fields, state, idx, F, I)
        return out

    # -- algebra ---------------------------------------------------------
    def __add__(self, o): return Add(self, _const(o))
    def __radd__(self, o): return Add(_const(o), self)
    def __sub__(self, o): return Sub(self, _const(o))
    def __rsub__(self, o): return Sub(_const(o), self)
    def __mul__(self, o): return Mul(self, _const(o))
    def __rmul__(self, o): return Mul(_const(o), self)
    def __truediv__(self, o): return Div(self, _const(o))
    def __rtruediv__(self, o): return Div(_const(o), self)
    def __neg__(self): return Mul(Const(-1.0), self)
    def __pow__(self, p): return Power(self, float(p))


# ---------------------------------------------------------------------------
# leaves
# ---------------------------------------------------------------------------
class Field(Op):
    """An input column: a bar field, a point-in-time fundamental or alt field."""

    name = "Field"
    opcode = K.FIELD

    def __init__(self, field: str):
        self.params = (field,)

    def __repr__(self) -> str:
        return f"${self.params[0]}"

    def fields(self) -> set[str]:
        return {self.params[0]}

    def batch(self, *xs):  # resolved by the evaluators
        raise RuntimeError("Field nodes are bound to inputs by the evaluator")

    step = batch


class Const(Op):
    """A constant number."""

    name = "Const"
    opcode = K.CONST

    def __init__(self, value: float):
        self.params = (float(value),)

    def __repr__(self) -> str:
        return repr(self.params[0])

    @property
    def lookback(self) -> int:
        return 1

    def batch(self, *xs):
        return np.float64(self.params[0])

    def kernel_params(self):
        return 0, self.params[0]

    def step(self, state, rows, *xs):
        return np.full(n_rows(rows), self.params[0])


# ---------------------------------------------------------------------------
# elementwise: a numpy function (batch) and its scalar twin in kernels.elementwise (step)
# ---------------------------------------------------------------------------
class Elementwise(Op):
    """Stateless operator: value at a bar depends only on inputs at that bar."""

    fn: Callable[..., np.ndarray]

    def __init__(self, *children: Op):
        self.children = tuple(_const(c) for c in children)

    def batch(self, *xs):
        with np.errstate(all="ignore"):
            return _finite(self.fn(*xs))


def _safe_div(a, b):
    out = np.divide(a, b)
    if np.ndim(b) and not np.all(b):
        out = np.where(b == 0, np.nan, out)
    elif not np.ndim(b) and b == 0:
        out = np.full(np.shape(out), np.nan)
    return out


def _safe_log(a):
    a = np.asarray(a, float)
    out = np.full(a.shape, np.nan)
    np.log(a, out=out, where=(a > 0))
    return out


def _safe_sqrt(a):
    a = np.asarray(a, float)
    out = np.full(a.shape, np.nan)
    np.sqrt(a, out=out, where=(a >= 0))
    return out


def _cmp(fn):
    def f(a, b):
        out = fn(a, b).astype(float)
        return np.where(np.isnan(a) | np.isnan(b), np.nan, out)
    return f


def _elementwise(name: str, fn: Callable, opcode: int, doc: str) -> type:
    cls = type(name, (Elementwise,), {"name": name, "fn": staticmethod(fn), "opcode": opcode, "__doc__": doc})
    return cls


Add = _elementwise("Add", np.add, K.ADD, "a + b")
Sub = _elementwise("Sub", np.subtract, K.SUB, "a - b")
Mul = _elementwise("Mul", np.multiply, K.MUL, "a * b")
Div = _elementwise("Div", _safe_div, K.DIV, "a / b; NaN where b == 0")
Log = _elementwise("Log", _safe_log, K.LOG, "natural log; NaN for non-positive input")
Abs = _elementwise("Abs", np.abs, K.ABS, "absolute value")
Sqrt = _elementwise("Sqrt", _safe_sqrt, K.SQRT, "square root; NaN for negative input")
Sign = _elementwise("Sign", np.sign, K.SIGN, "sign: -1, 0 or 1 (NaN stays NaN)")
Greater = _elementwise("Greater", np.maximum, K.GREATER, "elementwise max(a, b) (NaN if either is NaN)")
Less = _elementwise("Less", np.minimum, K.LESS, "elementwise min(a, b) (NaN if either is NaN)")
Gt = _elementwise("Gt", _cmp(np.greater), K.GT, "1.0 if a > b else 0.0 (NaN if either is NaN)")
Lt = _elementwise("Lt", _cmp(np.less), K.LT, "1.0 if a < b else 0.0 (NaN if either is NaN)")
Eq = _elementwise("Eq", _cmp(np.equal), K.EQ, "1.0 if a == b else 0.0 (NaN if either is NaN)")
Exp = _elementwise("Exp", np.exp, K.EXP, "exponential")


class Power(Elementwise):
    """a ** p for a constant exponent p."""

    name = "Power"
    opcode = K.POWER

    def __init__(self, child: Op, p: float):
        super().__init__(child)
        self.params = (float(p),)

    def fn(self, a):  # type: ignore[override]
        return np.power(a, self.params[0])

    def kernel_params(self):
        return 0, self.params[0]


# ---------------------------------------------------------------------------
# Ref: the value n bars ago (ring buffer of n values)
# ---------------------------------------------------------------------------
class Ref(Op):
    """Value of ``x`` ``n`` bars ago (NaN until ``n`` bars of history exist)."""

    name = "Ref"
    opcode = K.REF

    def __init__(self, x: Op, n: int):
        if int(n) < 1:
            raise ValueError(f"Ref needs n >= 1 bars, got {n!r}")
        self.children = (_const(x),)
        self.params = (int(n),)

    @property
    def lookback(self) -> int:
        return self.children[0].lookback + self.params[0]

    def batch(self, x):
        n = self.params[0]
        out = np.full(x.shape, np.nan)
        out[n:] = x[:-n]
        return out

    def kernel_params(self):
        return self.params[0], 0.0

    def state_fields(self):
        # a ring buffer of the last n inputs, and the number of inputs seen
        return (StateField("buf", "f", np.nan, self.params[0]), StateField("cnt", "i", 0))


def Delta(x: Op, n: int) -> Op:
    """x - Ref(x, n)."""
    return x - Ref(x, n)


def Pct(x: Op, n: int) -> Op:
    """x / Ref(x, n) - 1 (simple return over n bars)."""
    return x / Ref(x, n) - 1
