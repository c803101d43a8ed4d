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
        },
      },
    }

``metrics.json`` = ``{"title", "meta", "horizons": {"5": {"models": {name:
{"metrics", "breakdown", "importance"}}, "baselines": {name: {"metrics"}}}}}``
with NaN/inf written as null.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import metrics as M  # noqa: E402

SUMMARY_COLUMNS = ["rank_ic_mean", "rank_ic_std", "rank_icir", "rank_ic_tstat", "rank_ic_nw_tstat",
                   "ic_mean", "hit_rate", "top_decile_hit_rate", "long_short_ann_return", "sharpe_net",
                   "max_drawdown", "turnover", "n_days"]
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


def _fill(hres: dict, horizon: int, cost_bps: float, sectors) -> None:
    """Compute missing metrics / breakdowns in place from pred + labels."""
    labels = hres.get("labels")
    for kind in ("models", "baselines"):
        for entry in (hres.get(kind) or {}).values():
            pred = entry.get("pred")
            if pred is None or labels is None:
                continue
            if entry.get("metrics") is None:
                entry["metrics"] = M.summarize(pred, labels, horizon, cost_bps)
            if kind == "models" and entry.get("breakdown") is None:
                entry["breakdown"] = {"year": M.breakdown(pred, labels, horizon, "year")}
                if sectors:
                    entry["breakdown"]["sector"] = M.breakdown(pred, labels, horizon, "sector", sectors)


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


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _ic_figure(name, pred, labels, horizon, baselines) -> str:
    exc = labels[f"excess_{horizon}"]
    ic = M.daily_ic(pred, exc, "spearman")
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    a1.bar(ic.index, ic.values, width=1.0, color="#9ab", label="daily RankIC")
    a1.plot(ic.index, ic.rolling(63, min_periods=20).mean(), color="#c33", label="63-day mean")
    a1.axhline(0, color="k", lw=0.5)
    a1.set_title(f"{name}: daily RankIC vs excess_{horizon}")
    a1.legend(loc="upper left", fontsize=8)
    a2.plot(ic.index, ic.cumsum(), lw=2, label=name)
    for bname, b in baselines.items():
        if b.get("pred") is not None:
            bic = M.daily_ic(b["pred"], exc, "spearman")
            a2.plot(bic.index, bic.cumsum(), ls="--", lw=1, label=bname)
    a2.axhline(0, color="k", lw=0.5)
    a2.set_title("cumulative RankIC (baselines dashed)")
    a2.legend(loc="upper left", fontsize=8)
    return _png(fig)


def _decile_figure(name, pred, labels, horizon) -> str:
    q = M.quantile_returns(pred, labels[f"fwd_ret_{horizon}"], 10).mean()
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar(q.index.astype(str), q.values * 1e4, color=["#c55" if v < 0 else "#5a5" for v in q.values])
    ax.set_xlabel("predicted decile (10 = best)")
    ax.set_ylabel(f"mean fwd_ret_{horizon} (bps)")
    ax.set_title(f"{name}: decile mean forward return")
    return _png(fig)


def _long_short_figures(name, pred, labels, horizon, cost_bps) -> str:
    books = M.long_short_books(pred, labels[f"fwd_ret_{horizon}"], horizon, cost_bps)
    if not books:
        return "<p class='note'>no long-short book (too few names)</p>"
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for i, b in enumerate(books):
        ax.plot(b.index, np.cumprod(1 + b["net"]), color="#36c" if i == 0 else "#9bd",
                lw=1.8 if i == 0 else 0.8, label="net, book 0" if i == 0 else None)
    ax.plot(books[0].index, np.cumprod(1 + books[0]["gross"]), color="#888", ls="--", lw=1, label="gross, book 0")
    ax.axhline(1, color="k", lw=0.5)
    ax.set_title(f"{name}: top-minus-bottom decile equity, net of {cost_bps:g} bps "
                 f"({len(books)} staggered {horizon}-day books)")
    ax.legend(loc="upper left", fontsize=8)
    out = _png(fig)
    tv = pd.concat(books).sort_index()["turnover"]
    fig, ax = plt.subplots(figsize=(10, 2.5))
    ax.plot(tv.index, tv.values, lw=0.6, color="#777")
    ax.plot(tv.index, tv.rolling(20, min_periods=5).mean(), color="#c33", lw=1.5, label="20-rebalance mean")
    ax.set_ylim(0, 1.05)
    ax.set_title("turnover per rebalance (fraction of book replaced)")
    ax.legend(loc="upper left", fontsize=8)
    return out + _png(fig)


def _importance_figure(name, importance: dict, top: int = 25) -> str:
    s = pd.Series(importance, dtype=float).dropna()
    s = s.reindex(s.abs().sort_values(ascending=False).index[:top])[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(s) + 1))
    ax.barh(s.index.astype(str), s.values, color="#58a")
    ax.set_title(f"{name}: feature importance (top {len(s)})")
    return _png(fig)


def _model_section(name, entry, labels, horizon, cost_bps, baselines) -> str:
    parts = [f"<h3>{html.escape(name)} (h={horizon})</h3>"]
    pred = entry.get("pred")
    if pred is not None and labels is not None:
        parts += ["<h4>Information coefficient</h4>", _ic_figure(name, pred, labels, horizon, baselines),
                  "<h4>Decile returns</h4>", _decile_figure(name, pred, labels, horizon),
                  "<h4>Long-short net of costs and turnover</h4>",
                  _long_short_figures(name, pred, labels, horizon, cost_bps)]
    bd = entry.get("breakdown") or {}
    for key, title in (("year", "By year"), ("sector", "By sector")):
        parts.append(f"<h4>{title}</h4>")
        parts.append(_table(bd[key], BREAKDOWN_COLUMNS, key) if bd.get(key)
                     else "<p class='note'>not available</p>")
    if entry.get("importance"):
        parts += ["<h4>Feature importance</h4>", _importance_figure(name, entry["importance"])]
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
        body.append(_png(reliability_figure(win)))
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
            "NW t-stat uses horizon-1 lags. Daily RankIC above ~0.15 signals leakage.</p>"]
    if meta:
        body.append(_table({k: {"value": v} for k, v in meta.items()}, ["value"], "meta"))
    for horizon, hres in sorted((results.get("horizons") or {}).items(), key=lambda kv: int(kv[0])):
        h = int(horizon)
        _fill(hres, h, cost_bps, sectors)
        models, baselines = hres.get("models") or {}, hres.get("baselines") or {}
        doc["horizons"][str(h)] = {
            "models": {n: {k: e.get(k) for k in ("metrics", "breakdown", "importance")} for n, e in models.items()},
            "baselines": {n: {"metrics": e.get("metrics")} for n, e in baselines.items()},
        }
        rows = {n: e.get("metrics") for n, e in models.items()}
        rows.update({f"{n} (baseline)": e.get("metrics") for n, e in baselines.items()})
        body += [f"<h2>Horizon {h} days</h2>", "<h3>Summary</h3>", _table(rows, SUMMARY_COLUMNS, "model")]
        for name, entry in models.items():
            body.append(_model_section(name, entry, hres.get("labels"), h, cost_bps, baselines))
    body += _ensemble_sections(results, doc)
    body += _extra_sections(results.get("doc_extra") or {}, doc)
    (out / "metrics.json").write_text(json.dumps(to_jsonable(doc), indent=2, allow_nan=False))
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")
    (out / "report.html").write_text(page, encoding="utf-8")
    return {"metrics": out / "metrics.json", "report": out / "report.html"}
