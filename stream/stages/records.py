"""Scoring one complete timestamp and building its score records; the stages' counters.

``score_timestamp`` is the last step of both the one-process pipeline
(``stream.stages.pipeline``) and the split scoring stage (``stream.stages.scoring``): one
vectorized ``Scorer.predict`` over the whole universe of ``t`` (sector codes as groups),
percentile and rank over that universe, the extensions (online layer, drift), then one
record per symbol keyed by symbol, value key ``symbol|ts|model_version``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from technic.features import registry as R
from technic.features.cross_section import cs_rank

from stream.io.codecs import utc_now_iso
from stream.io.output import Output
from stream.io.timestamps import ts_string
from stream.stages.latency import LatencyHistogram

_COLUMN = {n: i for i, n in enumerate(R.FEATURE_NAMES)}


@dataclass
class ExtensionResult:
    """What an extension returns for one scored timestamp."""

    online_scores: dict | None = None   # horizon -> (k,) adjusted scores, emitted as score_online
    alerts: list = field(default_factory=list)  # alert.json dicts


@dataclass
class Stats:
    bars_in: int = 0
    bars_applied: int = 0
    redelivered: int = 0          # exact redeliveries (same seq, same content): skipped
    conflicting_redeliveries: int = 0  # same seq, different content: dead-lettered
    scores_out: int = 0
    timestamps_closed: int = 0
    gaps: int = 0
    deadletter: Counter = field(default_factory=Counter)
    alerts: Counter = field(default_factory=Counter)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)  # bar receive -> score, per score

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "latency"}
        d["deadletter"] = dict(self.deadletter)
        d["alerts"] = dict(self.alerts)
        return d


def feature_columns(scorer) -> list[int]:
    return [_COLUMN[f] for f in scorer.feature_names]


def score_timestamp(t: int, names, feats: np.ndarray, scorer, hist, groups, closes, top_k: int,
                    extensions, stats: Stats) -> list[Output]:
    """Score the universe of ``t`` (``feats``: (k, n_features) in registry order, ``names`` sorted)."""
    X = np.ascontiguousarray(feats[:, feature_columns(scorer)])
    # the registry Scorer (technic.models.scoring): scores, win prob, contributions in one pass
    res = scorer.predict(X, history=hist, top_k=top_k, groups=groups)
    scores, win, contrib = res["scores"], res["win_prob"], res["contributions"]
    horizons = list(scorer.horizons)
    primary = scores[horizons[0]]
    pct = cs_rank(primary)
    order = np.argsort(-np.nan_to_num(primary, nan=-np.inf), kind="mergesort")
    rank = np.empty(len(names), np.int64)
    rank[order] = np.arange(1, len(names) + 1)
    ts = ts_string(t)
    version = scorer.version
    out = []
    online: dict = {}
    for ext in extensions:
        res = ext.on_scored(t, names, feats, closes, scores, scorer)
        if res is None:
            continue
        if res.online_scores:
            online.update(res.online_scores)
        for a in res.alerts:
            stats.alerts[a["type"]] += 1
            out.append(Output("alerts", (a.get("symbol") or a["type"]).encode(), a))
    emit = utc_now_iso()
    for i, sym in enumerate(names):
        value = {
            "symbol": sym, "ts": ts, "model_version": version,
            "scores": {f"{h}d": float(scores[h][i]) for h in horizons},
            "percentile": float(pct[i]) if np.isfinite(pct[i]) else 0.0,
            "rank": int(rank[i]), "universe_size": len(names),
            "top_contributions": [{"feature": f, "value": None if not np.isfinite(v) else float(v),
                                   "contribution": float(c)} for f, v, c in contrib[i]],
            "event_time": ts, "emit_time": emit, "key": f"{sym}|{ts}|{version}",
        }
        if win is not None:
            value["win_prob"] = float(win[i])
        if online:
            value["score_online"] = {f"{h}d": float(v[i]) for h, v in online.items() if np.isfinite(v[i])}
        out.append(Output("scores", sym.encode(), value))
    stats.scores_out += len(names)
    return out
