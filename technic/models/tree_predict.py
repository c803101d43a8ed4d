"""LightGBM tree ensembles as flat arrays + one compiled kernel: the same predictions, bit for bit.

``compile_booster(booster, num_iteration)`` reads the booster's text model (the first
``num_iteration`` iterations) into flat arrays and returns a ``CompiledTrees``, or ``None`` when the
model holds something this kernel does not reproduce exactly. ``CompiledTrees.predict(X)`` equals
``booster.predict(X, num_iteration=k)`` bitwise for a float64 (rows, features) array, on one thread
(the GIL released) and without LightGBM's per-call and per-row overhead (``bench/tree_predict.py``).

Why it is exact (LightGBM 4.x):

* the model text prints thresholds and leaf values with 17 significant digits (round trip exact),
  ``inf`` thresholds included; ``dump_model`` is not exact (it writes an infinite threshold as 1e300);
* a dense row reaches LightGBM's trees through ``RowPairFunctionFromDenseMatric``, which keeps only
  the values with ``|v| > kZeroThreshold`` or NaN; the others read as 0.0. ``kZeroThreshold`` is
  ``const double kZeroThreshold = 1e-35f``: float32(1e-35) widened, not the double 1e-35 (the tests
  pin this: -kZeroThreshold predicts like 0.0, its next double away from zero does not);
* each node follows ``Tree::NumericalDecision``: NaN reads as 0.0 unless the missing type is NaN; a
  missing value (type Zero and the value 0.0, or type NaN and the value NaN) goes to the default
  side; any other value goes left iff ``v <= threshold``, i.e. right iff ``v > threshold``. After
  the filter, a node's "special" values S (NaN; plus 0.0 for type Zero) all go one way, so the kernel
  reads a transformed copy of the feature: S -> -inf when S goes left (never above a threshold),
  S -> +inf when S goes right (above any threshold but +inf), and for a +inf threshold (only S goes
  right) an indicator column (S -> 1.0, the rest 0.0) compared with 0.5. Every node is then one
  ``column > threshold``; a feature gets one column per transform its nodes need;
* the prediction is ``GBDT::PredictRaw``: 0.0 plus each tree's leaf value, in tree order, in double,
  compiled without fast-math. Single-leaf trees add their one leaf value.

Not compiled (``compile_booster`` returns ``None``, callers use ``booster.predict``): categorical
splits, linear trees, ``average_output`` (random forest mode), more than one tree per iteration
(multiclass), and objectives whose prediction is not the raw score (binary, poisson, ``reg_sqrt``...).
Supported objectives are those where LightGBM's ``ConvertOutput`` is the identity: regression (l2),
regression_l1, huber, fair, quantile, mape.

Loop order: rows outer (one row through every tree) is bound by each walk's chain of dependent
loads; trees outer over all rows keeps a tree hot but streams the whole buffer per tree; blocks of
``BLOCK`` rows, each tree walked one level at a time for the whole block, overlap independent walks
with the block in cache and were fastest (the kernel's ``block`` argument runs all three; figures in
``bench/results/tree_predict.md``, ``python bench/tree_predict.py``).

All compiled code lives in this one module (numba's on-disk cache follows the defining file).
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64 as u64

_jit = njit(cache=True, error_model="numpy", nogil=True)

KZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold = 1e-35f
RAW_OBJECTIVES = ("regression", "regression_l1", "huber", "fair", "quantile", "mape")

BLOCK = 32  # rows walked through one tree together (independent walks overlap in the CPU)

# how a column of the kernel's buffer is derived from a feature: the set S of values that are
# "missing" for its nodes (NaN, plus 0.0 for missing type Zero) becomes -inf (S goes left), +inf
# (S goes right), or the column is an indicator (S -> 1.0, the rest 0.0; compared with 0.5)
S_RIGHT = 1
S_ZERO = 2
S_INDICATOR = 4


class Unsupported(ValueError):
    """The model holds something the compiled kernel does not reproduce exactly."""


class CompiledTrees:
    """A single-output tree ensemble as flat arrays.

    Columns ``q``: the kernel's buffer column ``q`` is feature ``col_feature[q]`` transformed by
    ``col_kind[q]`` (``S_*`` bits). Node ``i`` (each tree's internal nodes then its leaves, tree
    after tree) goes right iff ``column[code[i]] > thr[i]``; its children are ``kids[2i]`` (left) and
    ``kids[2i + 1]`` (right). A leaf is its own left and right child and holds its value in ``val[i]``
    (``val`` is 0.0 elsewhere), so ``depth[t]`` steps from ``roots[t]`` end on tree ``t``'s leaf for
    every row: the kernel walks a block of rows level by level with no exit test.
    """

    __slots__ = ("num_feature", "col_feature", "col_kind", "roots", "depth", "code", "thr", "kids", "val")

    def __init__(self, num_feature, col_feature, col_kind, roots, depth, code, thr, kids, val):
        self.num_feature = int(num_feature)
        self.col_feature = np.ascontiguousarray(col_feature, dtype=np.int64)
        self.col_kind = np.ascontiguousarray(col_kind, dtype=np.int64)
        self.roots = np.ascontiguousarray(roots, dtype=np.uint32)
        self.depth = np.ascontiguousarray(depth, dtype=np.int64)
        self.code = np.ascontiguousarray(code, dtype=np.uint32)
        self.thr = np.ascontiguousarray(thr, dtype=np.float64)
        self.kids = np.ascontiguousarray(kids, dtype=np.uint32)
        self.val = np.ascontiguousarray(val, dtype=np.float64)

    @property
    def num_trees(self) -> int:
        return int(self.roots.size)

    def predict(self, X, block: int = BLOCK) -> np.ndarray:
        """(n,) predictions of a (n, num_feature) array (converted to C-contiguous float64); ``block``
        rows walk each tree together (1: rows outer; n: trees outer; any value, same result)."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.num_feature:
            raise ValueError(f"expected a 2-D array with {self.num_feature} columns, got shape {X.shape}")
        out = np.empty(X.shape[0], dtype=np.float64)
        predict_rows(X, self.col_feature, self.col_kind, self.roots, self.depth, self.code, self.thr,
                     self.kids, self.val, out, max(1, int(block)))
        return out


# ---------------------------------------------------------------------------
# model text -> arrays
# ---------------------------------------------------------------------------
def _floats(s: str) -> list[float]:
    return [float(v) for v in s.split()]


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split()]


def node_column_kind(decision_type: int, threshold: float) -> tuple[int, float]:
    """(column kind, threshold the kernel compares with) of one numerical split, so that
    ``column > threshold`` is the right side of ``Tree::NumericalDecision`` for every input."""
    if threshold != threshold:
        raise Unsupported("NaN threshold")
    missing, default_left = (decision_type >> 2) & 3, bool(decision_type & 2)
    if missing == 1:    # Zero: a NaN reads as 0.0, and 0.0 is missing: to the default side
        kind, s_right = S_ZERO, not default_left
    elif missing == 2:  # NaN: a NaN is missing; 0.0 is compared
        kind, s_right = 0, not default_left
    else:               # None: a NaN reads as 0.0 and is compared
        kind, s_right = 0, 0.0 > threshold
    if not s_right:
        return kind, threshold                  # S -> -inf: never above the threshold
    if threshold < np.inf:
        return kind | S_RIGHT, threshold        # S -> +inf: above any finite (or -inf) threshold
    return kind | S_INDICATOR, 0.5              # threshold +inf: only S goes right


def from_model_string(text: str) -> CompiledTrees:
    """Parse LightGBM's text model (``Booster.model_to_string``); raises ``Unsupported``."""
    head, sep, _ = text.partition("\nend of trees")
    if not sep:
        raise Unsupported("no 'end of trees' in the model text")
    blocks = head.split("\nTree=")
    header: dict[str, str] = {}
    bare: set[str] = set()
    for line in blocks[0].splitlines():
        k, eq, v = line.partition("=")
        if eq:
            header[k.strip()] = v.strip()
        elif line.strip():
            bare.add(line.strip())
    if "average_output" in bare:
        raise Unsupported("average_output (random forest mode)")
    if int(header.get("num_class", "1")) != 1 or int(header.get("num_tree_per_iteration", "1")) != 1:
        raise Unsupported("more than one tree per iteration")
    obj = header.get("objective", "").split()
    if not obj or obj[0] not in RAW_OBJECTIVES or "sqrt" in obj[1:]:
        raise Unsupported(f"objective {header.get('objective')!r}: the prediction is not the raw score")
    num_feature = int(header["max_feature_idx"]) + 1

    columns: dict[tuple[int, int], int] = {}
    roots, depth, code, thr, kids, val = [], [], [], [], [], []
    for block in blocks[1:]:
        t: dict[str, str] = {}
        for line in block.splitlines()[1:]:
            k, eq, v = line.partition("=")
            if eq:
                t[k] = v
        nl = int(t["num_leaves"])
        if int(t.get("num_cat", "0")) != 0:
            raise Unsupported("categorical splits")
        if int(t.get("is_linear", "0")) != 0:
            raise Unsupported("linear trees")
        values = _floats(t["leaf_value"])
        if nl < 1 or len(values) != nl:
            raise Unsupported("malformed tree: leaf_value")
        o, ni = len(thr), nl - 1
        if ni:
            sf, th, dt = _ints(t["split_feature"]), _floats(t["threshold"]), _ints(t["decision_type"])
            lc, rc = _ints(t["left_child"]), _ints(t["right_child"])
            if not all(len(a) == ni for a in (sf, th, dt, lc, rc)):
                raise Unsupported("malformed tree: node arrays")
        else:
            sf = th = dt = lc = rc = []
        for f, h, d, a, b in zip(sf, th, dt, lc, rc):
            if d & 1:
                raise Unsupported("categorical splits")
            if not 0 <= f < num_feature:
                raise Unsupported("malformed tree: split_feature")
            kind, h = node_column_kind(d, h)
            code.append(columns.setdefault((f, kind), len(columns)))
            thr.append(h)
            kids += [o + (a if a >= 0 else ni + ~a), o + (b if b >= 0 else ni + ~b)]
            val.append(0.0)
        for leaf, value in enumerate(values):  # absorbing leaves
            code.append(0)
            thr.append(0.0)
            kids += [o + ni + leaf] * 2
            val.append(value)
        d, level = 0, [o]  # depth: the longest root-to-leaf path
        while any(kids[2 * n] != n for n in level):
            level = [c for n in level if kids[2 * n] != n for c in kids[2 * n: 2 * n + 2]]
            d += 1
            if d > nl:
                raise Unsupported("malformed tree: not a tree")
        roots.append(o)
        depth.append(d)
    if not roots:
        raise Unsupported("no trees")
    if not columns:  # only single-leaf trees: the leaves still read (and ignore) column 0
        columns[(0, 0)] = 0
    col_feature, col_kind = zip(*columns)
    return CompiledTrees(num_feature, col_feature, col_kind, roots, depth, code, thr, kids, val)


def compile_booster(booster, num_iteration: int | None = None) -> CompiledTrees | None:
    """The first ``num_iteration`` iterations of ``booster`` (all when None or <= 0, like
    ``Booster.predict``), or None when the model is not supported (see module docstring)."""
    k = -1 if num_iteration is None or num_iteration <= 0 else int(num_iteration)
    try:
        return from_model_string(booster.model_to_string(num_iteration=k))
    except Unsupported:
        return None


# ---------------------------------------------------------------------------
# kernel
# ---------------------------------------------------------------------------
@_jit
def predict_rows(X, col_feature, col_kind, roots, depth, code, thr, kids, val, out, block):
    """out[r] = 0.0 + each tree's leaf value for row r, in tree order.

    Blocks of ``block`` rows. The block is transposed (feature-major) with LightGBM's filter
    (``|v| <= kZeroThreshold`` -> 0.0); each column is then one contiguous pass over its feature
    (S -> -inf / +inf / indicator, per ``col_kind``). Each tree walks all rows of the block one level
    at a time, one comparison per node, no branch on the data: independent walks the CPU overlaps.
    Indices into the hot arrays are unsigned (numba adds a negative-index fix-up to signed ones)."""
    n, p = X.shape
    nq = col_feature.size
    B = u64(block)
    tr = np.empty(p * block, dtype=np.float64)
    buf = np.empty(nq * block, dtype=np.float64)
    node = np.empty(block, dtype=np.uint64)
    acc = np.empty(block, dtype=np.float64)
    for r0 in range(0, n, block):
        m = min(block, n - r0)
        for i in range(m):
            for j in range(p):
                v = X[r0 + i, j]
                tr[j * block + i] = 0.0 if abs(v) <= KZERO else v  # NaN fails the comparison: stays NaN
            acc[i] = 0.0
        for q in range(nq):
            src = tr[col_feature[q] * block: col_feature[q] * block + m]
            dst = buf[q * block: q * block + m]
            kind = col_kind[q]
            if kind == 0:
                for i in range(m):
                    v = src[i]
                    dst[i] = -np.inf if v != v else v
            elif kind == S_RIGHT:
                for i in range(m):
                    v = src[i]
                    dst[i] = np.inf if v != v else v
            elif kind == S_ZERO:
                for i in range(m):
                    v = src[i]
                    dst[i] = -np.inf if (v != v or v == 0.0) else v
            elif kind == S_ZERO | S_RIGHT:
                for i in range(m):
                    v = src[i]
                    dst[i] = np.inf if (v != v or v == 0.0) else v
            elif kind == S_INDICATOR:
                for i in range(m):
                    dst[i] = 1.0 if src[i] != src[i] else 0.0
            else:  # S_ZERO | S_INDICATOR
                for i in range(m):
                    v = src[i]
                    dst[i] = 1.0 if (v != v or v == 0.0) else 0.0
        for t in range(roots.size):
            root = u64(roots[t])
            for i in range(m):
                node[i] = root
            for _ in range(depth[t]):
                for i in range(m):
                    k = node[i]
                    right = buf[u64(code[k]) * B + u64(i)] > thr[k]
                    node[i] = u64(kids[u64(2) * k + u64(right)])
            for i in range(m):
                acc[i] += val[node[i]]
        for i in range(m):
            out[r0 + i] = acc[i]
