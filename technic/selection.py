"""Feature selection ensemble, fitted inside one training fold only.

Four views of usefulness, each scoring every candidate feature on a row subsample of the
training fold (for speed; the subsample is drawn with a fixed seed):

1. mutual information with the target (``sklearn.feature_selection.mutual_info_regression``);
2. LightGBM gain importance of a small, heavily regularized model;
3. |coefficient| of ``LassoCV`` on standardized (already cross-sectionally ranked) features,
   with time-ordered CV folds (no shuffling across dates);
4. |Spearman correlation| with the target (univariate RankIC).

Scores are turned into ranks (1 = best) and averaged; features are then taken in that order
through a correlation filter (a feature whose |corr| with an already kept one exceeds
``max_corr`` is skipped as redundant) until ``k`` are kept. Features that are constant or
mostly missing in the fold are dropped first.

Stability across folds = mean pairwise Jaccard similarity of the selected sets
(:func:`selection_stability`); 1 = the same set every fold.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd


class FeatureSelector:
    """Average-rank ensemble selector (see module docstring). ``fit`` returns self."""

    def __init__(self, k: int = 40, max_corr: float = 0.9, sample_rows: int = 10000,
                 mi_rows: int = 2000, max_missing: float = 0.5, seed: int = 0, n_threads: int = 2):
        self.k = k
        self.max_corr = max_corr
        self.sample_rows = sample_rows
        self.mi_rows = mi_rows
        self.max_missing = max_missing
        self.seed = seed
        self.n_threads = n_threads

    def fit(self, X: pd.DataFrame, y) -> "FeatureSelector":
        """``X``: training-fold features (ideally cross-sectionally ranked), ``y``: target."""
        y = np.asarray(y, dtype=np.float64)
        ok = np.isfinite(y)
        rng = np.random.default_rng(self.seed)
        idx = np.flatnonzero(ok)
        if len(idx) > self.sample_rows:
            idx = np.sort(rng.choice(idx, self.sample_rows, replace=False))
        Xs = X.iloc[idx]
        ys = y[idx]
        names = list(X.columns)
        miss = Xs.isna().mean().to_numpy()
        nun = Xs.nunique().to_numpy()
        usable = [n for n, m, u in zip(names, miss, nun) if m <= self.max_missing and u > 1]
        self.dropped_ = sorted(set(names) - set(usable))
        if not usable:
            raise ValueError("no usable feature in this training fold (all constant or mostly missing)")
        A = Xs[usable].to_numpy(np.float64)
        filled = np.where(np.isfinite(A), A, 0.0)  # ranked features: 0 = cross-sectional centre
        scores = pd.DataFrame(index=usable)
        scores["mi"] = self._mi(filled, ys, rng)
        scores["lgbm"] = self._lgbm(A, ys)
        scores["lasso"] = self._lasso(filled, ys)
        scores["corr"] = np.abs(self._spearman(filled, ys))
        self.scores_ = scores
        ranks = scores.rank(ascending=False, method="average")
        self.avg_rank_ = ranks.mean(axis=1).sort_values(kind="mergesort")
        corr = np.abs(np.corrcoef(filled, rowvar=False))
        corr = pd.DataFrame(np.nan_to_num(corr), index=usable, columns=usable)
        kept: list[str] = []
        for f in self.avg_rank_.index:
            if len(kept) >= self.k:
                break
            if kept and corr.loc[f, kept].max() > self.max_corr:
                continue
            kept.append(f)
        order = {n: i for i, n in enumerate(names)}
        self.selected_ = sorted(kept, key=order.get)  # registry order
        return self

    def _mi(self, A, y, rng) -> np.ndarray:
        from sklearn.feature_selection import mutual_info_regression
        n = min(self.mi_rows, len(y))
        sub = np.sort(rng.choice(len(y), n, replace=False)) if n < len(y) else np.arange(len(y))
        return mutual_info_regression(A[sub], y[sub], n_neighbors=3, random_state=self.seed)

    def _lgbm(self, A, y) -> np.ndarray:
        import lightgbm as lgb
        params = dict(objective="regression", learning_rate=0.1, num_leaves=7, min_data_in_leaf=200,
                      feature_fraction=0.8, lambda_l2=10.0, max_bin=63, verbosity=-1, seed=self.seed,
                      num_threads=self.n_threads, deterministic=True, force_col_wise=True)
        b = lgb.train(params, lgb.Dataset(A, y), num_boost_round=30)
        return b.feature_importance("gain")

    def _lasso(self, A, y) -> np.ndarray:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LassoCV
        from sklearn.model_selection import TimeSeriesSplit
        sd = A.std(axis=0)
        Z = (A - A.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            m = LassoCV(cv=TimeSeriesSplit(3), alphas=20, max_iter=2000, random_state=self.seed).fit(Z, y)
        return np.abs(m.coef_)

    @staticmethod
    def _spearman(A, y) -> np.ndarray:
        ra = pd.DataFrame(A).rank().to_numpy()
        ry = pd.Series(y).rank().to_numpy()
        ra = ra - ra.mean(axis=0)
        ry = ry - ry.mean()
        den = np.sqrt((ra ** 2).sum(axis=0) * (ry ** 2).sum())
        return np.where(den > 0, (ra * ry[:, None]).sum(axis=0) / np.where(den > 0, den, 1.0), 0.0)


def jaccard(a, b) -> float:
    a, b = set(a), set(b)
    return len(a & b) / len(a | b) if a | b else 1.0


def selection_stability(sets) -> float:
    """Mean pairwise Jaccard similarity of the selected feature sets (NaN with < 2 sets)."""
    sets = [set(s) for s in sets]
    pairs = list(combinations(sets, 2))
    return float(np.mean([jaccard(a, b) for a, b in pairs])) if pairs else float("nan")
