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
                    extensions, stats: Stats, deferred: list | None = None) -> list[Output]:
    """Score the universe of ``t`` (``feats``: (k, n_features) in registry order, ``names`` sorted).

    ``deferred`` (a list; explanations "deferred"): the score records carry no contributions and
    ``"explanation": "deferred"``; a job is appended to ``deferred`` that returns the explanation
    records of ``t`` (``explanation_records``), for the caller to run after the scores are sent."""
    X = np.ascontiguousarray(feats[:, feature_columns(scorer)])
    # the registry Scorer (technic.models.scoring): scores, win prob, contributions in one pass
    defer = deferred is not None and top_k > 0
    if defer:
        res = scorer.predict(X, history=hist, top_k=top_k, groups=groups, defer_contributions=True)
        contrib = [[] for _ in names]
        explain = res["explain"]
        deferred.append(lambda: explanation_records(t, names, scorer.version, explain()))
    else:
        res = scorer.predict(X, history=hist, top_k=top_k, groups=groups)
        contrib = res["contributions"]
    scores, win = res["scores"], res["win_prob"]
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
    # python lists first: per-element float(numpy scalar) made this loop ~3x slower
    score_l = {f"{h}d": scores[h].tolist() for h in horizons}
    pct_l = np.where(np.isfinite(pct), pct, 0.0).tolist()
    rank_l = rank.tolist()
    win_l = None if win is None else np.asarray(win, np.float64).tolist()
    online_l = {f"{h}d": (np.asarray(v, np.float64).tolist(), np.isfinite(v).tolist()) for h, v in online.items()}
    k = len(names)
    score_d = [dict(zip(score_l, v)) for v in zip(*score_l.values())]   # per symbol {"5d": ..., ...}
    top_l = [_contribution_list(c) if len(c) else [] for c in contrib]
    for i, sym in enumerate(names):
        value = {
            "symbol": sym, "ts": ts, "model_version": version,
            "scores": score_d[i],
            "percentile": pct_l[i], "rank": rank_l[i], "universe_size": k,
            "top_contributions": top_l[i],
            "event_time": ts, "emit_time": emit, "key": f"{sym}|{ts}|{version}",
        }
        if defer:
            value["explanation"] = "deferred"
        if win_l is not None:
            value["win_prob"] = win_l[i]
        if online_l:
            value["score_online"] = {h: v[i] for h, (v, ok) in online_l.items() if ok[i]}
        out.append(Output("scores", sym.encode(), value))
    stats.scores_out += len(names)
    return out


def _contribution_list(top) -> list[dict]:
    return [{"feature": f, "value": None if not np.isfinite(v) else float(v), "contribution": float(c)}
            for f, v, c in top]


def explanation_records(t: int, names, version: str, contrib) -> list[Output]:
    """One ``technic.explanations`` record per symbol of ``t`` (keyed by symbol, value key
    ``symbol|ts|model_version`` as its score's): the top contributions a deferred score left out."""
    ts = ts_string(t)
    emit = utc_now_iso()
    return [Output("explanations", sym.encode(), {
        "symbol": sym, "ts": ts, "model_version": version, "key": f"{sym}|{ts}|{version}",
        "top_contributions": _contribution_list(contrib[i]), "event_time": ts, "emit_time": emit})
        for i, sym in enumerate(names)]


EXPLAIN_MODES = ("inline", "deferred")


def check_explain(mode: str) -> list | None:
    """The stage's list of deferred explanation jobs for ``mode`` (None when inline)."""
    if mode not in EXPLAIN_MODES:
        raise ValueError(f"explain must be one of {EXPLAIN_MODES}, got {mode!r}")
    return [] if mode == "deferred" else None


def take_deferred(jobs: list | None) -> list:
    """The deferred explanation jobs (oldest first), handed over and cleared (to run elsewhere)."""
    if not jobs:
        return []
    out = list(jobs)
    jobs.clear()
    return out


def run_deferred(jobs: list | None) -> list[Output]:
    """Run (and clear) the deferred explanation jobs, oldest timestamp first."""
    return [o for job in take_deferred(jobs) for o in job()]
