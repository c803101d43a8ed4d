"""``technic online-eval``: does the online layer help? A replay, in-process, no broker.

1. Train the bundle (``train_quick_model``: walk-forward LightGBM + gate, into a temporary registry
   unless one is given) on the bars strictly before ``split_date``.
2. Replay the bars from ``warmup_days`` trading dates before the split (the features' lookback) through
   ``ScoringPipeline`` with the ``OnlineLayer``; scores are suppressed before the split, so every
   score, online update and alert is out of sample.
3. Daily RankIC (Spearman, ``technic.evaluation.metrics``) of the static score and of the online score
   per horizon against the batch labels (``excess_h`` from ``technic.labels``), with mean, ICIR,
   t-stat and Newey-West t-stat (lags h-1); alert counts by type.

Labels are only read here, after the replay, to score what the stream emitted.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from technic.errors import TechnicError

from stream.online.layer import OnlineConfig, OnlineLayer, registry_reference_loader


def replay(bars, fundamentals, securities, scorer, layer, start_scoring, progress=None):
    """Stream ``bars`` through a pipeline with ``layer``; return (score rows, alert records, pipeline)."""
    from stream.stages.models import ModelSource
    from stream.stages.pipeline import PipelineConfig, ScoringPipeline, ts_ns
    from stream.tools.publisher import bar_records, fundamental_records
    from technic.data import sector_map
    secs = sector_map(securities) if securities is not None else None
    p = ScoringPipeline(ModelSource(None, scorer=scorer), sectors=secs, config=PipelineConfig(grace_s=1e9, top_k=0),
                        extensions=[layer])
    layer.bind(p)
    p.suppress_until = ts_ns(str(pd.Timestamp(start_scoring).date())) - 1
    rows, alerts = [], []

    def take(outs):
        for o in outs:
            if o.kind == "scores":
                v = o.value
                rows.append((v["ts"], v["symbol"], v["scores"], v.get("score_online", {})))
            elif o.kind == "alerts":
                alerts.append(o.value)
    for _, _, v in fundamental_records(fundamentals):
        take(p.on_fundamental(v))
    recs = list(bar_records(bars))
    for i, (_, _, v) in enumerate(recs):
        take(p.on_bar(v, "technic.bars", 0, i))
        if i % 500 == 0:
            take(p.poll())
            if progress:
                progress(i, len(recs))
    take(p.flush())
    return rows, alerts, p


def rank_ic_table(rows, bars, horizons) -> dict:
    from technic.evaluation.metrics import daily_ic, ic_summary
    from technic.labels import make_labels
    labels = make_labels(bars, horizons)
    idx = pd.MultiIndex.from_arrays([pd.to_datetime([r[0] for r in rows]), [r[1] for r in rows]],
                                    names=["date", "symbol"])
    out = {}
    for h in horizons:
        key = f"{h}d"
        static = pd.Series([r[2].get(key, np.nan) for r in rows], index=idx, dtype=float)
        online = pd.Series([r[3].get(key, np.nan) for r in rows], index=idx, dtype=float)
        lab = labels[f"excess_{h}"]
        res = {}
        for name, s in (("static", static), ("online", online)):
            ic = daily_ic(s, lab, method="spearman")
            res[name] = ic_summary(ic, horizon=h)
        both = pd.concat([daily_ic(static, lab, "spearman"), daily_ic(online, lab, "spearman")], axis=1).dropna()
        res["online_minus_static"] = ic_summary(both.iloc[:, 1] - both.iloc[:, 0], horizon=h)
        out[key] = res
    return out


def online_eval(bars, fundamentals=None, securities=None, *, split_date, registry=None, version=None,
                config: OnlineConfig | None = None, warmup_days: int = 300, progress=None) -> dict:
    from technic.models.scoring import load_scorer
    from technic.training import train_quick_model
    cfg = config or OnlineConfig()
    cfg.enabled = True
    cfg.online_learning = True
    split = pd.Timestamp(split_date)
    dates = np.sort(pd.to_datetime(bars["date"]).unique())
    before = dates[dates < split]
    if len(before) < 120 or (dates >= split).sum() < 40:
        raise TechnicError(f"--split-date {split.date()}: need >= 120 dates before and >= 40 after it, "
                           f"got {len(before)} and {(dates >= split).sum()}")
    t0 = time.perf_counter()
    tmp = None
    if registry is None:
        tmp = tempfile.TemporaryDirectory(prefix="technic-online-eval-")
        registry = Path(tmp.name)
    try:
        if version is None:
            train = bars[pd.to_datetime(bars["date"]) < split]
            version = train_quick_model(train, fundamentals, securities, registry_root=registry,
                                        horizons=tuple(cfg.horizons), promote_if_empty=True)
        scorer = load_scorer(registry, version)
        t_train = time.perf_counter() - t0
        layer = OnlineLayer(cfg, reference_loader=registry_reference_loader(registry))
        first = before[max(0, len(before) - warmup_days)]
        stream_bars = bars[pd.to_datetime(bars["date"]) >= first]
        t1 = time.perf_counter()
        rows, alerts, pipe = replay(stream_bars, fundamentals, securities, scorer, layer, split, progress)
        t_stream = time.perf_counter() - t1
    finally:
        if tmp is not None:
            tmp.cleanup()
    counts: dict[str, int] = {}
    for a in alerts:
        counts[a["type"]] = counts.get(a["type"], 0) + 1
    psi_feats: dict[str, int] = {}
    for a in alerts:
        if a["type"] == "psi":
            psi_feats[a["feature"]] = psi_feats.get(a["feature"], 0) + 1
    return {
        "model_version": version, "split_date": str(split.date()), "horizons": list(cfg.horizons),
        "n_symbols": int(bars["symbol"].nunique()), "n_scored_timestamps": len({r[0] for r in rows}),
        "n_scores": len(rows), "config": cfg.to_dict(), "rank_ic": rank_ic_table(rows, bars, cfg.horizons),
        "alerts": dict(sorted(counts.items())), "psi_alerts_by_feature": dict(sorted(psi_feats.items())),
        "learned_rows": {str(h): L.n_learned for h, L in layer.learners.items()},
        "learner_weights": {str(h): {k: round(v, 5) for k, v in L.weights().items()} for h, L in layer.learners.items()},
        "timing_s": {"train": t_train, "stream": t_stream, "bars_streamed": int(len(stream_bars)),
                     "us_per_bar": 1e6 * t_stream / max(len(stream_bars), 1)},
    }


def format_table(doc: dict) -> str:
    lines = [f"online-eval  model {doc['model_version']}  split {doc['split_date']}  "
             f"{doc['n_symbols']} symbols, {doc['n_scored_timestamps']} scored timestamps",
             f"{'horizon':>8s} {'score':>8s} {'rank_ic':>9s} {'icir':>8s} {'t':>7s} {'nw_t':>7s} {'days':>6s}"]
    for h, res in doc["rank_ic"].items():
        for name in ("static", "online", "online_minus_static"):
            m = res[name]
            lines.append(f"{h:>8s} {name[:8]:>8s} {m['mean']:9.4f} {m['icir']:8.4f} {m['tstat']:7.2f} "
                         f"{m['nw_tstat']:7.2f} {m['n_days']:6d}")
    lines.append("alerts: " + (", ".join(f"{k}={v}" for k, v in doc["alerts"].items()) or "none"))
    return "\n".join(lines)
