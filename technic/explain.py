"""SHAP explanations from the models' native tree contributions.

LightGBM ``predict(pred_contrib=True)`` and XGBoost ``predict(pred_contribs=True)`` return
exact TreeSHAP values: one column per feature plus a last bias column, summing to the raw
prediction. (The ``shap`` package is not needed for tree models.)

* :func:`global_importance`: mean |SHAP| per feature over a sample of rows.
* :func:`top_contributions`: per row, the top-k (feature, value, contribution) by |contribution|.
"""

from __future__ import annotations

import numpy as np


def global_importance(contrib: np.ndarray, feature_names: list[str]) -> dict[str, float]:
    """Mean |SHAP| per feature (bias column dropped), sorted descending."""
    c = np.asarray(contrib)[:, : len(feature_names)]
    imp = np.abs(c).mean(axis=0)
    order = np.argsort(-imp, kind="mergesort")
    return {feature_names[j]: float(imp[j]) for j in order}


def top_contributions(contrib: np.ndarray, X: np.ndarray, feature_names: list[str],
                      top_k: int = 5) -> list[list[tuple[str, float, float]]]:
    """Per row: the ``top_k`` (feature, feature value, contribution) by |contribution|, ties by name order."""
    p = len(feature_names)
    c = np.asarray(contrib)[:, :p]
    X = np.asarray(X, dtype=np.float64)
    k = max(0, min(int(top_k), p))
    order = np.argsort(-np.abs(c), axis=1, kind="mergesort")[:, :k]
    return [[(feature_names[j], float(X[i, j]), float(c[i, j])) for j in order[i]] for i in range(len(c))]
