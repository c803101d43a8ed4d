"""Walk-forward hyper-parameter search (Optuna) for one model and one label horizon.

Objective. A trial's parameters are scored by the same walk-forward as ``technic backtest``:
for each fold of the SEARCH period, a ``models.Ensemble`` of the one model (fitted inside the
training fold, purge = horizon + lag, no blend) and a prediction of the fold's test
block; the fold's score is its mean daily RankIC against ``excess_h`` (exactly the
``{model}_rank_ic`` of ``walk_forward``'s fold rows). The objective is the mean of the fold
scores, minus ``std_penalty`` x their standard deviation (default 0). Folds weigh equally, so a
shorter last fold counts as much as a full one. A fold whose predictions are constant on every
date (no split found) has no RankIC and scores 0: it carries no ranking information.

Pruning. After fold i the running mean of the fold scores is reported at step i; Optuna's pruner
(default ``MedianPruner(n_startup_trials=5, n_warmup_steps=1)``: from the second fold on) may stop
the trial. A few folds of daily RankIC are noisy (on 100 symbols the 2-fold running mean hardly
predicted the 14-fold mean): pruning saves time at a real risk of dropping a good trial;
``prune_after_folds`` sets when it may start, 0 turns it off.

Holdout. The last ``holdout_days`` dates are cut off before searching and never seen by it:
search test dates stop ``purge`` (>= horizon) dates before the holdout, so no search label
reaches into it. Afterwards the best parameters and the defaults are each fitted once on all
dates before the holdout (purge in between, a final walk-forward fold) and scored on it: the
holdout RankIC is the honest figure; the best in-search value is a maximum over trials and is
biased upwards.

Budget and persistence: ``n_trials`` new trials and/or ``timeout_s`` (checked between trials: a
running trial finishes). The study lives in ``<out>/study.db`` (SQLite); running again with the
same study name resumes it, provided the data and settings match (stored as ``setup``).
The defaults are always enqueued as a trial, so the search includes them.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .errors import TechnicError
from .evaluation import metrics as M
from .models.deep import DEEP_NAMES
from .models.ensemble import Ensemble
from .models.gbm import LGBM_DEFAULTS, XGB_DEFAULTS
from .models.inputs import PanelInputs
from .models.regime import REGIME_FEATURES, regime_columns
from .research import MIN_SYMBOLS, BacktestConfig, training_targets
from .validation import WalkForwardSplit

HPO_MODELS = ("lgbm", "xgb", *DEEP_NAMES)


# --------------------------------------------------------------------------- search spaces
def lgbm_space() -> dict:
    """LightGBM (names as ``models.gbm.LGBM_DEFAULTS``); max_depth too: the default 6 caps leaves at 64."""
    from optuna.distributions import FloatDistribution as F, IntDistribution as I
    return {"learning_rate": F(0.01, 0.2, log=True), "num_leaves": I(7, 127), "max_depth": I(3, 8),
            "min_data_in_leaf": I(50, 2000, log=True), "feature_fraction": F(0.4, 1.0),
            "bagging_fraction": F(0.5, 1.0), "lambda_l2": F(1e-3, 10.0, log=True)}


def xgb_space() -> dict:
    """XGBoost (names as ``models.gbm.XGB_DEFAULTS``: ``eta`` is the learning rate)."""
    from optuna.distributions import FloatDistribution as F, IntDistribution as I
    return {"eta": F(0.01, 0.2, log=True), "max_depth": I(2, 8), "min_child_weight": F(50.0, 2000.0, log=True),
            "subsample": F(0.5, 1.0), "colsample_bytree": F(0.4, 1.0), "reg_lambda": F(1e-3, 10.0, log=True)}


def lstm_space() -> dict:
    """LSTM (``models.deep`` overrides): learning rate, size, depth; dropout acts between layers only."""
    from optuna.distributions import CategoricalDistribution as C, FloatDistribution as F, IntDistribution as I
    return {"lr": F(1e-4, 1e-2, log=True), "hidden": C([16, 32, 64, 128]), "layers": I(1, 2),
            "dropout": F(0.0, 0.3)}


def transformer_space() -> dict:
    """Transformer: d_model (``hidden``, divisible by the 4 heads), encoder layers, lr, dropout."""
    from optuna.distributions import CategoricalDistribution as C, FloatDistribution as F, IntDistribution as I
    return {"lr": F(1e-4, 1e-2, log=True), "hidden": C([16, 32, 64, 128]), "transformer_layers": I(1, 3),
            "dropout": F(0.0, 0.3)}


SPACES = {"lgbm": lgbm_space, "xgb": xgb_space, "lstm": lstm_space, "transformer": transformer_space}


def suggest(trial, space: dict) -> dict:
    """Sample every parameter of ``space`` ({name: optuna distribution}) from ``trial``."""
    from optuna.distributions import CategoricalDistribution, IntDistribution
    out = {}
    for name, d in space.items():
        if isinstance(d, CategoricalDistribution):
            out[name] = trial.suggest_categorical(name, d.choices)
        elif isinstance(d, IntDistribution):
            out[name] = trial.suggest_int(name, d.low, d.high, log=d.log)
        else:
            out[name] = trial.suggest_float(name, d.low, d.high, log=d.log)
    return out


def default_params(model: str, cfg: BacktestConfig) -> dict:
    """What ``cfg`` uses today for the searched parameters (the library defaults plus cfg's overrides)."""
    if model in DEEP_NAMES:
        from .models.deep import PRESETS
        base = {**PRESETS[cfg.deep_preset], **cfg.deep_params}
        base.setdefault("transformer_layers", base["layers"])  # what models.deep uses when it is unset
    else:
        base = {**(LGBM_DEFAULTS if model == "lgbm" else XGB_DEFAULTS), **cfg.model_params.get(model, {})}
    return {k: base[k] for k in SPACES[model]()}


def with_params(cfg: BacktestConfig, model: str, horizon: int, params: dict) -> BacktestConfig:
    """A copy of ``cfg`` for one model (alone: no blend, no meta-model) and one horizon with ``params`` applied."""
    one = dict(models=(model,), horizons=(horizon,), blend=False, win_prob=False)
    if model in DEEP_NAMES:
        return replace(cfg, **one, deep_params={**cfg.deep_params, **params})
    mp = {**cfg.model_params, model: {**cfg.model_params.get(model, {}), **params}}
    return replace(cfg, **one, model_params=mp)


def params_doc(cfg: BacktestConfig, model: str) -> dict:
    """The BacktestConfig fields that carry ``model``'s parameters ({"model_params": ...} or {"deep_params": ...})."""
    if model in DEEP_NAMES:
        return {"deep_params": dict(cfg.deep_params)}
    return {"model_params": {model: dict(cfg.model_params.get(model, {}))}}


# --------------------------------------------------------------------------- objective
class WalkForwardObjective:
    """``objective(trial) -> float``: mean fold RankIC of one model on the search folds (module doc)."""

    def __init__(self, features: pd.DataFrame, labels: pd.DataFrame, cfg: BacktestConfig, model: str,
                 horizon: int, holdout_days: int = 126, std_penalty: float = 0.0):
        if model not in HPO_MODELS:
            raise TechnicError(f"unknown model {model!r} for the search; expected one of {', '.join(HPO_MODELS)}")
        if holdout_days < 1:
            raise TechnicError(f"holdout_days must be >= 1, got {holdout_days}")
        if cfg.sector_neutral:
            raise TechnicError("the search does not support sector_neutral=True yet")
        self.model, self.horizon, self.holdout_days, self.std_penalty = model, int(horizon), holdout_days, std_penalty
        self.cfg = with_params(cfg, model, horizon, {})
        self.cfg.check()
        col = f"excess_{self.horizon}"
        if col not in labels.columns:
            raise TechnicError(f"labels have no horizon {self.horizon} ({col})")
        self.features = features.sort_index()
        self.excess = labels[col].reindex(self.features.index)
        self.dates = self.features.index.get_level_values(0).to_numpy()
        per_date = pd.Series(self.dates).value_counts()
        if len(per_date) == 0 or per_date.median() < MIN_SYMBOLS:
            raise TechnicError(f"too few symbols for a cross-sectional model: need a median of at least "
                               f"{MIN_SYMBOLS} symbols per date")
        uniq = np.unique(self.dates)
        purge, n = self.cfg.purge_days, len(uniq)
        n_search = n - holdout_days - purge  # search test dates: positions < n_search (labels end before holdout)
        if n_search <= self.cfg.min_train_days + purge:
            raise TechnicError(
                f"too few dates for a search fold plus the holdout: {n} distinct dates, need more than "
                f"min_train_days + 2 x purge + holdout_days = {self.cfg.min_train_days} + 2 x {purge} + "
                f"{holdout_days} = {self.cfg.min_train_days + 2 * purge + holdout_days}")
        self.search_end, self.holdout_start = uniq[n_search - 1], uniq[n - holdout_days]
        split = self._split(end=self.search_end)
        self.folds = list(split.split(dates=self.dates))
        self.fold_table = split.folds(dates=self.dates)
        self.holdout_fold = next(self._split(start=self.holdout_start, test_days=holdout_days).split(dates=self.dates))
        self.inputs = PanelInputs(self.features, factor_names=(),
                                  passthrough=regime_columns(self.features) if self.cfg.regime else None)
        self.forced = REGIME_FEATURES if self.cfg.regime else ()
        # the backtest's training target (multi-horizon mix, sector-neutral option): the same definition
        self.target = training_targets(labels.reindex(self.features.index), self.cfg)[self.horizon][0]
        self._selected: dict = {}  # per (fold, seed): the selected features, reused by every trial

    def _split(self, **kw) -> WalkForwardSplit:
        c = self.cfg
        args = dict(train_days=c.train_days, min_train_days=c.min_train_days, test_days=c.test_days,
                    purge_days=c.purge_days, embargo_days=c.embargo_days, horizon=c.purge_days)
        return WalkForwardSplit(**{**args, **kw})

    def fold_ic(self, params: dict, train_idx: np.ndarray, test_idx: np.ndarray, seed: int) -> pd.Series:
        """Daily RankIC of the model fitted with ``params`` on ``train_idx``, on the ``test_idx`` dates."""
        cfg = with_params(self.cfg, self.model, self.horizon, params)
        key = (int(train_idx[0]), int(train_idx[-1]), len(train_idx), seed)  # selection: same fold + seed
        e = Ensemble(cfg, self.horizon, seed, cfg.purge(self.horizon)).fit(
            self.inputs, train_idx, self.target, features=self._selected.get(key), forced=self.forced)
        self._selected[key] = e.features_
        pred = pd.Series(e.predict(self.inputs, test_idx)[self.model], index=self.features.index[test_idx])
        return M.daily_ic(pred, self.excess.iloc[test_idx], "spearman")

    def fold_score(self, params: dict, i: int) -> float:
        tr, te = self.folds[i]
        ic = float(self.fold_ic(params, tr, te, self.cfg.seed + i).mean())
        return ic if np.isfinite(ic) else 0.0

    def value(self, scores) -> float:
        s = np.asarray(scores, dtype=float)
        return float(s.mean() - (self.std_penalty * s.std(ddof=1) if self.std_penalty and len(s) > 1 else 0.0))

    def __call__(self, trial) -> float:
        import optuna
        params = suggest(trial, SPACES[self.model]())
        scores = []
        for i in range(len(self.folds)):
            scores.append(self.fold_score(params, i))
            trial.set_user_attr("fold_rank_ic", scores)
            trial.report(float(np.mean(scores)), i)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after fold {i}: running mean RankIC {np.mean(scores):.4f}")
        return self.value(scores)

    def holdout_ic(self, params: dict) -> pd.Series:
        """Daily RankIC on the holdout of the model fitted with ``params`` on every date before it."""
        tr, te = self.holdout_fold
        return self.fold_ic(params, tr, te, self.cfg.seed + len(self.folds))

    def setup(self) -> dict:
        """What must not change between runs of one study (checked on resume)."""
        c = self.cfg
        keep = ("train_days", "min_train_days", "test_days", "embargo_days", "k_features", "max_train_rows",
                "n_estimators", "early_stopping_rounds", "seed", "deep_preset", "regime", "selector_params")
        return {"model": self.model, "horizon": self.horizon, "holdout_days": self.holdout_days,
                "std_penalty": self.std_penalty, "n_rows": int(len(self.features)),
                "first_date": _day(self.dates[0]),
                "last_date": _day(self.dates[-1]),
                "n_symbols": int(self.features.index.get_level_values(1).nunique()),
                "base_params": params_doc(c, self.model), **{k: getattr(c, k) for k in keep}}


# --------------------------------------------------------------------------- study
def make_pruner(prune_after_folds: int = 2):
    """Median pruning once ``prune_after_folds`` folds are scored (after 5 finished trials); 0 = never prune."""
    import optuna
    if prune_after_folds < 0:
        raise TechnicError(f"prune_after_folds must be >= 0, got {prune_after_folds}")
    if prune_after_folds == 0:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=prune_after_folds - 1)


def open_study(out_dir, study_name: str, objective: WalkForwardObjective, sampler=None, pruner=None):
    """Create or resume the study in ``<out_dir>/study.db``; the stored setup must match."""
    import optuna
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # heartbeat: a killed run's RUNNING trial is failed on resume
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(f"sqlite:///{out.resolve() / 'study.db'}", heartbeat_interval=60)
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize", load_if_exists=True,
                                sampler=sampler or optuna.samplers.TPESampler(seed=objective.cfg.seed),
                                pruner=pruner or make_pruner())
    setup = json.loads(json.dumps(objective.setup(), default=str))
    old = study.user_attrs.get("setup")
    if old is None:
        study.set_user_attr("setup", setup)
    elif old != setup:
        diff = sorted(k for k in set(old) | set(setup) if old.get(k) != setup.get(k))
        raise TechnicError(f"study {study_name!r} in {out / 'study.db'} was run with other data or settings "
                           f"({', '.join(diff)} differ); use another --study-name or --out")
    return study


def run_hpo(features: pd.DataFrame, labels: pd.DataFrame, cfg: BacktestConfig, model: str, horizon: int,
            out_dir, *, n_trials: int | None = 20, timeout_s: float | None = None, holdout_days: int = 126,
            study_name: str | None = None, std_penalty: float = 0.0, prune_after_folds: int = 2, sampler=None,
            pruner=None,
            on_trial: Callable | None = None) -> dict:
    """Search, then score the best and the default parameters on the holdout; write
    ``best_params.json``, ``trials.csv`` and ``hpo.md`` into ``out_dir``; return the best_params doc."""
    import optuna
    from optuna.trial import TrialState
    t0 = time.perf_counter()
    obj = WalkForwardObjective(features, labels, cfg, model, horizon, holdout_days, std_penalty)
    name = study_name or f"technic-{model}-h{int(horizon)}"
    study = open_study(out_dir, name, obj, sampler, pruner or make_pruner(prune_after_folds))
    defaults = default_params(model, cfg)
    study.enqueue_trial(defaults, user_attrs={"defaults": True}, skip_if_exists=True)
    callbacks = [lambda s, t: on_trial(t, len(obj.folds))] if on_trial else []
    if n_trials or timeout_s:
        study.optimize(obj, n_trials=n_trials or None, timeout=timeout_s or None, callbacks=callbacks)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if not done:
        raise TechnicError(f"no trial of study {name!r} completed (all pruned or failed); run more trials")
    best = study.best_trial
    best_params = {k: best.params[k] for k in SPACES[model]()}
    hold_best = obj.holdout_ic(best_params)
    hold_def = hold_best if best_params == defaults else obj.holdout_ic(defaults)
    diff = (hold_best - hold_def).dropna()
    def_trial = next((t for t in done if t.user_attrs.get("defaults")), None)
    counts = {s: sum(t.state == s for t in study.trials) for s in (TrialState.COMPLETE, TrialState.PRUNED,
                                                                  TrialState.FAIL)}
    hb, hd = M.ic_summary(hold_best, horizon=horizon), M.ic_summary(hold_def, horizon=horizon)
    doc = {"model": model, "horizon": int(horizon), "study_name": name, "best_trial": best.number,
           "best_value": best.value, "holdout_rank_ic": hb["mean"], "holdout_rank_ic_nw_tstat": hb["nw_tstat"],
           "default_value": def_trial.value if def_trial else None, "holdout_rank_ic_default": hd["mean"],
           "holdout_minus_default_nw_tstat": M.ic_summary(diff, horizon=horizon)["nw_tstat"],
           "n_trials": len(study.trials), "n_complete": counts[TrialState.COMPLETE],
           "n_pruned": counts[TrialState.PRUNED], "n_failed": counts[TrialState.FAIL],
           "n_search_folds": len(obj.folds), "search_test_start": _day(obj.fold_table.test_start.iloc[0]),
           "search_test_end": _day(obj.search_end),
           "holdout_start": _day(obj.holdout_start), "holdout_days": holdout_days,
           "holdout_rank_ic_days": hb["n_days"], "params": best_params, "default_params": defaults,
           **params_doc(with_params(cfg, model, horizon, best_params), model),
           "wall_s": round(time.perf_counter() - t0, 1)}
    doc = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in doc.items()}
    write_outputs(out_dir, study, doc)
    return doc


def _day(d) -> str:
    return str(pd.Timestamp(d).date())


def trials_frame(study) -> pd.DataFrame:
    rows = []
    for t in study.trials:
        rows.append({"number": t.number, "state": t.state.name, "value": t.value,
                     "duration_s": t.duration.total_seconds() if t.duration else None,
                     "n_folds": len(t.intermediate_values), "defaults": bool(t.user_attrs.get("defaults")),
                     "fold_rank_ic": json.dumps([round(v, 6) for v in t.user_attrs.get("fold_rank_ic", [])]),
                     **{f"params_{k}": v for k, v in t.params.items()}})
    return pd.DataFrame(rows)


def _num(v) -> str:
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.4f}"


def _params(d: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items())


def write_outputs(out_dir, study, doc: dict) -> None:
    """``best_params.json`` (= ``doc``), ``trials.csv`` (one row per trial) and the ``hpo.md`` summary."""
    out = Path(out_dir)
    (out / "best_params.json").write_text(json.dumps(doc, indent=1) + "\n")
    frame = trials_frame(study)
    frame.to_csv(out / "trials.csv", index=False)
    gain = None if doc["holdout_rank_ic"] is None or doc["holdout_rank_ic_default"] is None else \
        doc["holdout_rank_ic"] - doc["holdout_rank_ic_default"]
    lines = [
        f"# Hyper-parameter search: {doc['model']}, horizon {doc['horizon']} (study `{doc['study_name']}`)", "",
        f"Objective: mean over {doc['n_search_folds']} walk-forward folds of the fold's mean daily RankIC "
        f"(search test dates {doc['search_test_start']} → {doc['search_test_end']}). Holdout: "
        f"{doc['holdout_days']} dates from {doc['holdout_start']}, never seen by the search, one final fold.", "",
        "| parameters | in-search RankIC | holdout RankIC | holdout NW t |", "|---|---|---|---|",
        f"| best (trial {doc['best_trial']}): {_params(doc['params'])} | {_num(doc['best_value'])} | "
        f"{_num(doc['holdout_rank_ic'])} | {_num(doc['holdout_rank_ic_nw_tstat'])} |",
        f"| defaults: {_params(doc['default_params'])} | {_num(doc['default_value'])} | "
        f"{_num(doc['holdout_rank_ic_default'])} | – |", "",
        f"Best − defaults on the holdout: {_num(gain)} (Newey-West t of the daily difference "
        f"{_num(doc['holdout_minus_default_nw_tstat'])}).",
        f"Trials: {doc['n_trials']} ({doc['n_complete']} complete, {doc['n_pruned']} pruned, "
        f"{doc['n_failed']} failed); this run {doc['wall_s']} s.", "",
        "The in-search value of the best trial is a maximum over trials (biased upwards); "
        "the holdout RankIC is the out-of-sample figure.", ""]
    top = frame[frame.state == "COMPLETE"].sort_values("value", ascending=False).head(5)
    pcols = [c for c in top.columns if c.startswith("params_")]
    if len(top):
        lines += ["| trial | value | seconds | " + " | ".join(c[len("params_"):] for c in pcols) + " |",
                  "|---" * (3 + len(pcols)) + "|"]
        for _, r in top.iterrows():
            vals = [f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in pcols]
            lines.append(f"| {r.number} | {r.value:.4f} | {r.duration_s:.0f} | " + " | ".join(vals) + " |")
    (out / "hpo.md").write_text("\n".join(lines) + "\n")
