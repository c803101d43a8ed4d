"""Tear sheet: ``metrics.json`` + one self-contained ``report.html`` per backtest.

The HTML embeds its matplotlib figures as base64 PNGs and loads nothing from
the network, so it can be mailed or archived as one file.

``results`` structure (what a backtest runner fills; only ``pred`` and
``labels`` are needed, everything else is computed when missing)::

    {
      "meta": {"cost_bps": 10, "universe": "...", "folds": "...", ...},  # JSON-able, shown as a table
      "sectors": {symbol: sector} | None,        # optional: enables the by-sector tables
      "horizons": {
        5: {
          "labels": DataFrame[(date, symbol)] with fwd_ret_5, excess_5,   # out-of-sample rows
          "models": {
            "lgbm": {"pred": Series[(date, symbol)],           # out-of-sample walk-forward predictions
                     "metrics": dict | None,                   # else summarize(pred, labels, 5, cost_bps)
                     "breakdown": {"year": {...}, "sector": {...}} | None,   # else computed
                     "importance": {feature: value} | None},   # SHAP / gain, bar chart when given
          },
          "baselines": {"momentum_12_1": {"pred": Series, "metrics": dict | None}, ...},
          "decay_labels": {1: Series, 5: Series, 10: Series, 20: Series} | None,   # optional: IC decay
        },
      },
    }

``metrics.json`` = ``{"title", "meta", "horizons": {"5": {"models": {name:
{"metrics", "breakdown", "importance", "rank_autocorr", "tie_share_mean",
"ic_decay"}}, "baselines": {name: {"metrics", "rank_autocorr",
"tie_share_mean", "ic_decay"}}}}}`` with NaN/inf written as null.
``rank_autocorr`` / ``tie_share_mean`` are the means over dates of
``diagnostics.rank_autocorrelation`` (lag 1) and ``diagnostics.tie_share``;
``ic_decay`` (``{g: {rank_ic_mean, rank_ic_nw_tstat, rank_ic_nw_se, nw_lags,
n_days}}``) is there only when ``decay_labels`` were given. Every year row of
``breakdown.year`` has ``partial`` (``diagnostics.partial_years`` of the dates
with a finite pred and label); the HTML shows such a year as "2013 (partial)".
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from . import figures as F
from . import metrics as M
from .signal_stats import SignalStats

SUMMARY_COLUMNS = ["rank_ic_mean", "rank_ic_std", "rank_icir", "rank_ic_tstat", "rank_ic_nw_tstat",
                   "ic_mean", "hit_rate", "top_decile_hit_rate", "long_short_ann_return", "sharpe_net",
                   "max_drawdown", "turnover", "n_days"]
DEGENERACY_COLUMNS = ["rank_autocorr", "tie_share_mean"]
MODEL_KEYS = ("metrics", "breakdown", "importance", "ic_decay", "rank_autocorr", "tie_share_mean")
BASELINE_KEYS = ("metrics", "ic_decay", "rank_autocorr", "tie_share_mean")
BREAKDOWN_COLUMNS = ["rank_ic_mean", "rank_icir", "rank_ic_nw_tstat", "hit_rate", "top_decile_hit_rate",
                     "n_days"]

CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:.3em 0}
.note{color:#666;font-size:13px}h2{border-bottom:2px solid #444}"""


def to_jsonable(obj):
    """Recursively convert to plain JSON types: NaN/inf -> None, numpy -> python, keys -> str."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if obj is pd.NaT or obj is pd.NA:
        return None
    if isinstance(obj, (pd.Timestamp, np.datetime64)):
        return None if pd.isna(obj) else pd.Timestamp(obj).isoformat()
    if isinstance(obj, (np.integer, bool, np.bool_)):
        return obj.item() if hasattr(obj, "item") else obj
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (int, str)):
        return obj
    return str(obj)


def _fill(hres: dict, horizon: int, cost_bps: float, sectors) -> dict:
    """Compute missing metrics / breakdowns / diagnostics in place from pred + labels.

    Marks partial years in the year breakdown (``partial``: bool per row) and
    returns the ``SignalStats`` of every entry with a pred, keyed (kind, name),
    for the figures to reuse.
    """
    labels, decay = hres.get("labels"), hres.get("decay_labels")
    stats = {}
    for kind in ("models", "baselines"):
        for name, entry in (hres.get(kind) or {}).items():
            pred = entry.get("pred")
            if pred is None or labels is None:
                continue
            st = stats[(kind, name)] = SignalStats(pred, labels, horizon, cost_bps, decay)
            if entry.get("metrics") is None:
                entry["metrics"] = M.summarize(pred, labels, horizon, cost_bps)
            if kind == "models" and entry.get("breakdown") is None:
                entry["breakdown"] = {"year": M.breakdown(pred, labels, horizon, "year")}
                if sectors:
                    entry["breakdown"]["sector"] = M.breakdown(pred, labels, horizon, "sector", sectors)
            years = (entry.get("breakdown") or {}).get("year")
            if years:
                entry["breakdown"]["year"] = {k: {**r, "partial": str(k).isdigit() and int(k) in st.partial_years}
                                              for k, r in years.items()}
            if entry.get("rank_autocorr") is None:
                entry["rank_autocorr"] = st.rank_autocorr[1]
            if entry.get("tie_share_mean") is None:
                entry["tie_share_mean"] = st.tie_share[1]
            if decay and entry.get("ic_decay") is None:
                entry["ic_decay"] = st.ic_decay
    return stats


def _entry_doc(entry: dict, keys: tuple) -> dict:
    """The JSON part of one model/baseline entry; ``ic_decay`` only where it was computed."""
    return {k: entry.get(k) for k in keys if k != "ic_decay" or entry.get("ic_decay") is not None}


def _summary_row(entry: dict) -> dict:
    return {**(entry.get("metrics") or {}), **{k: entry.get(k) for k in DEGENERACY_COLUMNS}}


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
    return html.escape(str(v))


def _table(rows: dict, columns: list[str], first: str = "") -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in [first, *columns])
    body = "".join(
        f"<tr><td>{html.escape(str(name))}</td>" + "".join(f"<td>{_fmt((r or {}).get(c))}</td>" for c in columns)
        + "</tr>" for name, r in rows.items())
    return f"<table><tr>{head}</tr>{body}</table>"


def diagnostics_html(name, pred, labels: pd.DataFrame, horizon: int, cost_bps: float,
                     decay_labels: dict | None = None, baselines: dict | None = None, *,
                     stats: SignalStats | None = None, baseline_stats: dict | None = None) -> str:
    """HTML of the signal diagnostics of one model (figures of ``diagnostics.py``).

    IC histogram (mean +- 2 NW se), monthly RankIC heat map, cumulative return
    per decile, top-minus-bottom spread over time, rank autocorrelation (beside
    the baselines' means) and, when ``decay_labels`` (g -> label Series) are
    given, the IC decay over g beside the baselines'. ``baselines`` is
    ``{name: {"pred": Series}}``; ``stats`` / ``baseline_stats`` pass already
    built ``SignalStats`` so nothing is computed twice (built here when absent).
    """
    st = stats or SignalStats(pred, labels, horizon, cost_bps, decay_labels)
    bst = baseline_stats if baseline_stats is not None else _baseline_stats(baselines, labels, horizon,
                                                                            cost_bps, decay_labels)
    parts = ["<h4>RankIC distribution and seasonality</h4>",
             F.ic_histogram_figure(name, st.daily_rank_ic, horizon), F.monthly_ic_figure(name, st.monthly_ic),
             "<h4>Cumulative return per decile</h4>",
             F.quantile_cumulative_figure(name, st.quantile_cumulative, horizon),
             "<h4>Top-minus-bottom spread</h4>", F.spread_figure(name, st.spread, horizon, cost_bps),
             "<h4>Signal rank autocorrelation</h4>",
             F.rank_autocorr_figure(name, st.rank_autocorr[0], {n: b.rank_autocorr[0] for n, b in bst.items()})]
    if st.ic_decay:
        parts += ["<h4>IC decay</h4>",
                  F.ic_decay_figure(name, st.ic_decay, {n: b.ic_decay for n, b in bst.items() if b.ic_decay})]
    return "\n".join(parts)


def _baseline_stats(baselines, labels, horizon, cost_bps, decay_labels) -> dict:
    return {n: SignalStats(b["pred"], labels, horizon, cost_bps, decay_labels)
            for n, b in (baselines or {}).items() if b.get("pred") is not None}


def _year_rows(rows: dict) -> dict:
    """Year breakdown rows for the HTML table: a partial year's key reads "2013 (partial)"."""
    return {(f"{k} (partial)" if (r or {}).get("partial") else k): r for k, r in rows.items()}


def _model_section(name, entry, labels, horizon, cost_bps, baselines, stats=None, baseline_stats=None,
                   decay_labels=None) -> str:
    parts = [f"<h3>{html.escape(name)} (h={horizon})</h3>"]
    pred = entry.get("pred")
    if pred is not None and labels is not None:
        st = stats or SignalStats(pred, labels, horizon, cost_bps, decay_labels)
        bst = baseline_stats if baseline_stats is not None else _baseline_stats(baselines, labels, horizon,
                                                                                cost_bps, decay_labels)
        parts += ["<h4>Information coefficient</h4>",
                  F.ic_figure(name, st.daily_rank_ic, {n: b.daily_rank_ic for n, b in bst.items()}, horizon),
                  "<h4>Decile returns</h4>",
                  F.decile_figure(name, st.decile_profile, {n: b.decile_profile for n, b in bst.items()}, horizon),
                  "<h4>Long-short net of costs and turnover</h4>",
                  F.long_short_figures(name, st.books, horizon, cost_bps),
                  diagnostics_html(name, pred, labels, horizon, cost_bps, decay_labels, baselines,
                                   stats=st, baseline_stats=bst)]
    bd = entry.get("breakdown") or {}
    for key, title in (("year", "By year"), ("sector", "By sector")):
        parts.append(f"<h4>{title}</h4>")
        rows = _year_rows(bd[key]) if key == "year" and bd.get(key) else bd.get(key)
        parts.append(_table(rows, BREAKDOWN_COLUMNS, key) if rows else "<p class='note'>not available</p>")
    if entry.get("importance"):
        parts += ["<h4>Feature importance</h4>", F.importance_figure(name, entry["importance"])]
    return "\n".join(parts)


def _ensemble_sections(results: dict, doc: dict) -> list[str]:
    """Stacking comparison, win-probability calibration (Brier + reliability plot) and fit times,
    when the backtest produced them (``technic.research.run_backtest``); also stored in ``doc``."""
    body = []
    stacking = results.get("stacking") or {}
    if stacking:
        body.append("<h2>Stacking</h2><p class='note'>Out-of-sample RankIC of the Ridge stack (fitted on "
                    "out-of-fold base predictions inside each training window) vs the equal-weight average of "
                    "the base models vs the best single base model (chosen after the fact, which flatters it). "
                    "Keep the stack only where it beats both.</p>")
        rows = {f"h={h}": c for h, c in sorted(stacking.items(), key=lambda kv: int(kv[0]))}
        body.append(_table(rows, ["stack", "equal_weight_average", "best_single", "best_single_value",
                                  "stack_rank_icir", "ensemble_rank_icir", "stack_beats_both"], "horizon"))
        doc["stacking"] = stacking
    win = results.get("win_prob") or {}
    if win:
        from technic.models.meta import reliability_figure
        body.append("<h2>Win probability (meta-model)</h2><p class='note'>Calibrated inside each training "
                    "fold; Brier score out of sample vs the base-rate forecast of the training fold "
                    "(brier_skill > 0 means better than the base rate).</p>")
        rows = {f"h={h} {t}": {k: v for k, v in e.items() if k != "reliability"}
                for h, d in win.items() for t, e in d.items()}
        body.append(_table(rows, ["brier", "brier_base_rate", "brier_skill", "observed_rate", "mean_pred", "n"],
                           "target"))
        body.append(F.png(reliability_figure(win)))
        doc["win_prob"] = {str(h): {t: {k: v for k, v in e.items() if k != "reliability"} for t, e in d.items()}
                           for h, d in win.items()}
    fit = (results.get("timing") or {}).get("fit_s_by_model") or {}
    if fit:
        body.append("<h2>Fit time</h2><p class='note'>Seconds summed over all walk-forward folds and horizons "
                    "(oof_base = the inner-fold refits that feed the stack and the meta-model; stack includes oof_base).</p>")
        body.append(_table({k: {"seconds": round(v, 1)} for k, v in fit.items()}, ["seconds"], "step"))
    return body


def _extra_sections(extra: dict, doc: dict) -> list[str]:
    """Served model vs baselines and null, skill verdicts, degeneracy, lockbox periods
    (``evaluation.predictions``); also stored in ``doc``."""
    body = []
    doc.update(extra)
    for h, c in sorted((extra.get("comparison") or {}).items(), key=lambda kv: int(kv[0])):
        body.append(f"<h2>Served model vs baselines (h={h})</h2><p class='note'>The served model against the "
                    "better of 12-1 momentum and 5-day reversal (chosen after the fact), with the Newey-West "
                    "t-stat of the daily RankIC difference; the null model is the same ML pipeline trained on "
                    "labels shuffled within each date.</p>")
        body.append(_table({"served": c}, [k for k in c if k != "served"], "h"))
    for h, rows in sorted((extra.get("skill") or {}).items(), key=lambda kv: int(kv[0])):
        if rows:
            body.append(f"<h3>Skill vs the null model (h={h})</h3><p class='note'>Daily RankIC minus the null "
                        "model's; a model within 2 standard errors of it shows no evidence of skill.</p>")
            body.append(_table(rows, ["mean_diff", "nw_tstat", "n_days", "verdict"], "model"))
    for h, rows in sorted((extra.get("degeneracy") or {}).items(), key=lambda kv: int(kv[0])):
        body.append(f"<h3>Degeneracy (h={h})</h3><p class='note'>Trees kept per fold (tree models) and the mean "
                    "share of a date's predictions tied with another name's: a degenerate model ranks little.</p>")
        body.append(_table(rows, ["trees_median", "trees_min", "tie_share_mean"], "model"))
    lock = extra.get("lockbox")
    if lock:
        body.append(f"<h2>Before and in the lockbox (from {html.escape(lock['date'])})</h2>")
        for period, d in lock["periods"].items():
            for h, e in d.items():
                if h in ("start", "end"):
                    continue
                body.append(f"<h3>{html.escape(period)} {d['start']} .. {d['end']} (h={h})</h3>")
                body.append(_table({n: {"rank_ic_mean": v} for n, v in e["rank_ic"].items()}, ["rank_ic_mean"],
                                   "model"))
                body.append(_table({"served": e["comparison"]}, [k for k in e["comparison"] if k != "served"], "h"))
    return body


def write_tearsheet(out_dir, results: dict, title: str) -> dict:
    """Write ``metrics.json`` and ``report.html`` into ``out_dir``; return their paths.

    Missing ``metrics``/``breakdown`` entries are computed (and stored back
    into ``results``) from ``pred`` and the horizon's ``labels``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(results.get("meta") or {})
    cost_bps = float(meta.get("cost_bps", 10.0))
    sectors = results.get("sectors")
    doc = {"title": title, "meta": meta, "horizons": {}}
    body = [f"<h1>{html.escape(title)}</h1>",
            "<p class='note'>All numbers are out-of-sample walk-forward. RankIC/IC and hit rates use "
            "excess returns; hit_rate = sign vs the date's universe median; top_decile_hit_rate = share of "
            "the predicted top decile beating the median. Long-short: top minus bottom decile, equal weight, "
            f"non-overlapping, averaged over the staggered books, net of {cost_bps:g} bps per unit traded. "
            "NW t-stat uses horizon-1 lags. Daily RankIC above ~0.15 signals leakage. "
            "rank_autocorr = mean Spearman correlation of a date's prediction ranks with the previous "
            "date's; tie_share_mean = mean share of a date's predictions equal to another one's (a "
            "degenerate model ties many). Quantile and long-short membership breaks tied predictions by a "
            "hash of (date, symbol): deterministic, not alphabetical, redrawn each date. A year marked "
            "(partial) is not covered from its first to its last trading day.</p>"]
    if meta:
        body.append(_table({k: {"value": v} for k, v in meta.items()}, ["value"], "meta"))
    for horizon, hres in sorted((results.get("horizons") or {}).items(), key=lambda kv: int(kv[0])):
        h = int(horizon)
        stats = _fill(hres, h, cost_bps, sectors)
        models, baselines = hres.get("models") or {}, hres.get("baselines") or {}
        doc["horizons"][str(h)] = {
            "models": {n: _entry_doc(e, MODEL_KEYS) for n, e in models.items()},
            "baselines": {n: _entry_doc(e, BASELINE_KEYS) for n, e in baselines.items()},
        }
        rows = {n: _summary_row(e) for n, e in models.items()}
        rows.update({f"{n} (baseline)": _summary_row(e) for n, e in baselines.items()})
        body += [f"<h2>Horizon {h} days</h2>", "<h3>Summary</h3>",
                 _table(rows, SUMMARY_COLUMNS + DEGENERACY_COLUMNS, "model")]
        bst = {n: stats[("baselines", n)] for n in baselines if ("baselines", n) in stats}
        for name, entry in models.items():
            body.append(_model_section(name, entry, hres.get("labels"), h, cost_bps, baselines,
                                       stats.get(("models", name)), bst, hres.get("decay_labels")))
    body += _ensemble_sections(results, doc)
    body += _extra_sections(results.get("doc_extra") or {}, doc)
    (out / "metrics.json").write_text(json.dumps(to_jsonable(doc), indent=2, allow_nan=False))
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")
    (out / "report.html").write_text(page, encoding="utf-8")
    return {"metrics": out / "metrics.json", "report": out / "report.html"}
