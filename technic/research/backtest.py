"""``technic backtest``: features -> lagged labels -> walk-forward -> ``predictions.parquet`` ->
``metrics.json`` + ``report.html`` (recomputed from the file, as ``technic evaluate`` does)."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from ..evaluation.predictions import decay_column, report, write_predictions
from ..factors import factor_panel
from ..labels import make_labels
from ..models.baselines import baseline_predictions
from .config import DECAY_HORIZONS, BacktestConfig
from .data import cached_features, draw_symbols, group_codes
from .walkforward import make_split, walk_forward

PREDICTIONS = "predictions.parquet"


def model_columns(cfg: BacktestConfig, available) -> list[str]:
    """Model columns in report order: base models, their average, stack, composite, blend, null."""
    order = [*cfg.base_models, "ensemble", "stack", "composite", "blend", "null"]
    return [n for n in order if n in available]


def build_predictions(wf: dict, features: pd.DataFrame, labels: pd.DataFrame, cfg: BacktestConfig,
                      sectors: dict | None) -> tuple[pd.DataFrame, dict]:
    """The long predictions frame (see ``evaluation.predictions``) and its column groups."""
    base = baseline_predictions(features)
    fac = factor_panel(features.sort_index(), group_codes(features.sort_index().index, sectors),
                       sector_neutral=cfg.factor_sector_neutral)
    factors = [f for f in fac.columns if f not in base]
    parts, models = [], None
    for h, frame in wf["predictions"].items():
        idx = frame.index
        lab = labels.reindex(idx)
        cols = {"horizon": np.full(len(idx), int(h), np.int64), "fold": frame["fold"].to_numpy(),
                "label": lab[f"excess_{h}"].to_numpy(), "fwd_ret": lab[f"fwd_ret_{h}"].to_numpy()}
        cols.update({decay_column(g): lab[f"excess_{g}"].to_numpy() for g in DECAY_HORIZONS})
        models = model_columns(cfg, frame.columns)
        cols.update({m: frame[m].to_numpy(np.float64) for m in models})
        cols.update({b: p.reindex(idx).to_numpy(np.float64) for b, p in base.items()})
        cols.update({f: fac[f].reindex(idx).to_numpy(np.float64) for f in factors})
        part = pd.DataFrame(cols, index=idx).reset_index()
        parts.append(part)
    frame = pd.concat(parts, ignore_index=True)
    frame["symbol"] = frame["symbol"].astype(str)
    return frame, {"models": models, "baselines": list(base), "factors": factors}


def run_backtest(bars, fundamentals=None, securities=None, alt=None, *, out_dir, cfg: BacktestConfig,
                 symbols: int | None = None, half: int | None = None, universe_seed: int = 0,
                 title: str = "Technic walk-forward backtest", cache_dir=None, progress_factory=None,
                 lockbox=None) -> dict:
    """Run the backtest; write ``predictions.parquet``, ``metrics.json``, ``report.html`` in ``out_dir``.

    Features and every per-date transform use all symbols of ``bars``; ``symbols`` (a random draw of
    N, seeded by ``universe_seed``) or ``half`` (1 or 2 of a seeded random split) only limits the rows
    trained on and evaluated."""
    from ..data import sector_map
    cfg.check()
    t0 = time.perf_counter()
    feats = cached_features(bars, fundamentals, securities, alt, cache_dir=cache_dir)
    labels = make_labels(bars, cfg.label_horizons, lag=cfg.lag)
    t_feat = time.perf_counter() - t0
    universe = draw_symbols(bars["symbol"], symbols, universe_seed, half)
    sectors = sector_map(securities) if isinstance(securities, pd.DataFrame) else securities
    try:
        n_folds = make_split(cfg).get_n_splits(dates=feats.index.get_level_values(0))
    except ValueError:
        n_folds = 0  # walk_forward raises the user-facing error
    if progress_factory is not None:
        with progress_factory(n_folds * len(cfg.horizons), "walk-forward folds") as tick:
            wf = walk_forward(feats, labels, cfg, sectors, universe, tick)
    else:
        wf = walk_forward(feats, labels, cfg, sectors, universe)
    t_wf = time.perf_counter() - t0 - t_feat
    frame, groups = build_predictions(wf, feats, labels, cfg, sectors)
    meta = {**{k: v for k, v in asdict(cfg).items() if k not in ("model_params", "selector_params")},
            "n_symbols_data": int(bars["symbol"].nunique()), "n_symbols_evaluated": len(universe),
            "universe": ("all" if symbols is None and half is None else
                         f"{'half ' + str(half) if half else str(symbols) + ' symbols'} drawn with seed {universe_seed}"),
            "n_rows": int(len(feats)), "data_start": str(pd.Timestamp(bars["date"].min()).date()),
            "data_end": str(pd.Timestamp(bars["date"].max()).date()), "purge_days": cfg.purge_days,
            "n_folds": n_folds, "label": (f"excess return from close t+{cfg.lag} to close t+{cfg.lag}+h "
                                          f"(lag {cfg.lag} bar{'s' if cfg.lag != 1 else ''})"),
            "target": f"mean over g in {{{', '.join(f'{m}h' for m in cfg.target_mix)}}} of per-date rank-gauss "
                      f"of excess_g{' (sector-neutral)' if cfg.sector_neutral else ''}",
            "served_model": cfg.served, "features_s": round(t_feat, 1), "walk_forward_s": round(t_wf, 1)}
    info = {"title": title, "horizons": [int(h) for h in cfg.horizons], "lag": int(cfg.lag),
            "cost_bps": float(cfg.cost_bps), "served": cfg.served, "null": "null" if cfg.null else None,
            "decay_horizons": list(DECAY_HORIZONS), "sectors": sectors or None, "meta": meta, **groups,
            "folds": wf["folds"], "extras": {"selection": wf["selection"], "importance": wf["importance"],
                                             "win_prob": wf["win_prob"], "timing": wf["timing"]}}
    path = write_predictions(frame, _jsonable(info), Path(out_dir) / PREDICTIONS)
    doc = report(path, out_dir, lockbox=lockbox, title=title)
    doc["_predictions"] = path
    return doc


def _jsonable(obj):
    from ..evaluation.tearsheet import to_jsonable
    return to_jsonable(obj)
