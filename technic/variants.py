"""Regime and sector variants compared out of sample on the same walk-forward folds.

``compare_variants`` computes features and labels once, then runs ``research.walk_forward`` once
per variant with a copy of the config that only toggles ``regime`` (past-only market-regime columns,
``models.regime``) and ``sector_neutral`` (train on the sector-neutral excess; evaluation still
uses ``excess_h``). Folds depend on the dates and the split settings only, so every variant is
scored on the same test dates as the base.

For each horizon and variant it reports the metrics of the model that would be served (``stack``
if configured, else ``ensemble`` when there are several base models, else the single model) and,
against the base, the mean of the daily RankIC difference with a paired Newey-West t-stat
(``metrics.ic_summary`` of the difference series, horizon-1 lags: overlapping labels make it
autocorrelated).

Decision rule (``decide``): a variant is **kept** only if its daily-RankIC improvement over the base
has NW t >= ``KEEP_NW_T`` (2.0) on the primary horizon (the first of ``cfg.horizons``) AND its mean
improvement is >= 0 on every other horizon; otherwise it is **not kept**.

``by_regime`` (mean daily RankIC on high- vs low-volatility dates, ``regime_high_vol``) is a
diagnostic of where the skill is, not a regime-specific model.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd

from .errors import TechnicError
from .evaluation import metrics as M
from .evaluation.tearsheet import CSS, _table, to_jsonable
from .labels import make_labels
from .models.baselines import baseline_predictions
from .models.regime import market_regime
from .research import BacktestConfig, cached_features, make_split, walk_forward

VARIANTS = {  # name -> (regime, sector_neutral)
    "base": (False, False),
    "regime": (True, False),
    "sector_neutral": (False, True),
    "regime+sector_neutral": (True, True),
}
KEEP_NW_T = 2.0
METRIC_COLUMNS = ["rank_ic_mean", "rank_icir", "rank_ic_nw_tstat", "sharpe_net", "n_days"]
DIFF_COLUMNS = ["mean_diff", "nw_tstat", "share_days_better", "n_days"]
RULE = (f"kept only if the daily-RankIC improvement over base has Newey-West t >= {KEEP_NW_T:g} on the "
        "primary horizon AND a mean improvement >= 0 on every other horizon; otherwise not kept")


def served_model(cfg: BacktestConfig) -> str:
    """The prediction compared: the configuration's served model (``blend``, or the ML member)."""
    return cfg.served


def parse_variants(variants) -> tuple[str, ...]:
    """Validated variant names, 'base' first (added when missing: every comparison is against it)."""
    names = [v.strip() for v in (variants.split(",") if isinstance(variants, str) else variants) if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad or not names:
        raise TechnicError(f"unknown variant(s) {bad or names}; expected a comma-separated subset of "
                           f"{', '.join(VARIANTS)}")
    return ("base", *dict.fromkeys(v for v in names if v != "base"))


def variant_config(cfg: BacktestConfig, name: str) -> BacktestConfig:
    regime, neutral = VARIANTS[name]
    return replace(cfg, regime=regime, sector_neutral=neutral)


def paired_difference(ic_variant: pd.Series, ic_base: pd.Series, horizon: int) -> dict:
    """Mean of (variant - base) daily RankIC over the dates both have, with its Newey-West t-stat."""
    d = (ic_variant - ic_base).dropna()
    s = M.ic_summary(d, horizon=horizon)
    return {"mean_diff": s["mean"], "nw_tstat": s["nw_tstat"], "nw_lags": s["nw_lags"],
            "share_days_better": float((d > 0).mean()) if len(d) else float("nan"), "n_days": s["n_days"]}


def decide(doc: dict) -> dict:
    """Apply the decision rule to ``doc`` (needs meta.primary_horizon and horizons.*.variants.*.vs_base).

    Returns and stores ``doc['decisions'] = {variant: {'kept': bool, 'reason': str}}`` (base excluded).
    """
    primary = str(doc["meta"]["primary_horizon"])
    hs = doc["horizons"]
    out = {}
    for name in hs[primary]["variants"]:
        if name == "base":
            continue
        vs = hs[primary]["variants"][name]["vs_base"]
        t, m = vs.get("nw_tstat"), vs.get("mean_diff")
        why = []
        if t is None or not t == t or t < KEEP_NW_T:
            why.append(f"h{primary}: mean dRankIC {_num(m, '+.4f')}, NW t {_num(t, '.2f')} < {KEEP_NW_T:g}")
        for h, hd in hs.items():
            if h == primary or name not in hd["variants"]:
                continue
            mh = hd["variants"][name]["vs_base"].get("mean_diff")
            if mh is None or not mh == mh or mh < 0:
                why.append(f"h{h}: mean dRankIC {_num(mh, '+.4f')} < 0")
        ok = not why
        reason = (f"h{primary}: mean dRankIC {_num(m, '+.4f')}, NW t {_num(t, '.2f')} >= {KEEP_NW_T:g}; "
                  "no other horizon worse") if ok else "; ".join(why)
        out[name] = {"kept": ok, "reason": reason}
    doc["decisions"] = out
    return out


def _num(v, fmt: str) -> str:
    return "n/a" if v is None or not v == v else format(v, fmt)


def _by_regime(ic: pd.Series, high: pd.Series) -> dict:
    flag = high.reindex(ic.index)
    out = {}
    for key, val in (("high_vol", 1.0), ("low_vol", 0.0)):
        s = ic[flag == val]
        out[key] = {"rank_ic_mean": float(s.mean()) if len(s) else float("nan"), "n_days": int(len(s))}
    return out


def compare_variants(bars, fundamentals, securities, cfg: BacktestConfig,
                     variants=tuple(VARIANTS), out_dir=None, cache_dir=None, progress=None, universe=None) -> dict:
    """Run every variant on the same folds; write comparison.json/.md/.html to ``out_dir``; return the doc.

    ``securities`` is the securities frame or a {symbol: sector} dict (needed by sector-neutral variants).
    ``progress``: optional factory ``progress(total, desc)`` -> context manager yielding ``tick(n)``
    (as ``run_backtest``'s ``progress_factory``). The returned doc also holds ``_results``
    (not written): per variant and horizon, the served prediction, the daily RankIC and the labels.
    """
    from .data import sector_map
    names = parse_variants(variants)
    cfg.check()
    sectors = sector_map(securities) if isinstance(securities, pd.DataFrame) else securities
    needs = [v for v in names if VARIANTS[v][1]]
    if needs and not sectors:
        raise TechnicError(f"variant(s) {', '.join(needs)} need sectors: pass a securities file (--securities)")
    served = served_model(cfg)
    t0 = time.perf_counter()
    feats = cached_features(bars, fundamentals, securities, None, cache_dir=cache_dir)
    labels = make_labels(bars, cfg.label_horizons, lag=cfg.lag)
    t_feat = time.perf_counter() - t0
    high = market_regime(feats)["regime_high_vol"]
    try:
        n_folds = make_split(cfg).get_n_splits(dates=feats.index.get_level_values(0))
    except ValueError:
        n_folds = 0  # walk_forward raises the user-facing error
    raw, baselines, timing, test_dates = {}, {}, {}, {}
    for name in names:
        vcfg = variant_config(cfg, name)
        t1 = time.perf_counter()
        if progress is not None:
            with progress(n_folds * len(cfg.horizons), f"variant {name}") as tick:
                res = walk_forward(feats, labels, vcfg, sectors, universe, tick)
        else:
            res = walk_forward(feats, labels, vcfg, sectors, universe)
        timing[name] = round(time.perf_counter() - t1, 1)
        test_dates[name] = [(r["test_start"], r["test_end"]) for r in res["folds"]]
        base_pred = baseline_predictions(feats)
        for h, frame in res["predictions"].items():
            lab = labels.reindex(frame.index)[[f"fwd_ret_{h}", f"excess_{h}"]]
            pred = frame[served]
            raw.setdefault(h, {})[name] = {"pred": pred, "labels": lab,
                                           "rank_ic": M.daily_ic(pred, lab[f"excess_{h}"], "spearman"),
                                           "metrics": M.summarize(pred, lab, int(h), cfg.cost_bps)}
            if name == "base":
                baselines[h] = {b: M.summarize(p.reindex(frame.index), lab, int(h), cfg.cost_bps)
                                for b, p in base_pred.items()}
        del res
    if len({tuple(v) for v in test_dates.values()}) != 1:  # guard: the paired test needs identical folds
        raise TechnicError(f"variants ran on different folds: {test_dates}")
    doc = {"title": "Regime and sector variants (out-of-sample walk-forward, same folds)",
           "meta": {**{k: v for k, v in asdict(cfg).items()
                       if k not in ("model_params", "selector_params", "regime", "sector_neutral")},
                    "served_model": served, "primary_horizon": int(cfg.horizons[0]), "variants": list(names),
                    "n_symbols": int(bars["symbol"].nunique()), "n_rows": int(len(feats)),
                    "data_start": str(pd.Timestamp(bars["date"].min()).date()),
                    "data_end": str(pd.Timestamp(bars["date"].max()).date()),
                    "n_folds": len(test_dates["base"]) // len(cfg.horizons), "features_s": round(t_feat, 1),
                    "walk_forward_s": timing, "decision_rule": RULE},
           "horizons": {}}
    for h, per in raw.items():
        base_ic = per["base"]["rank_ic"]
        doc["horizons"][str(h)] = {
            "variants": {n: {**e["metrics"],
                             "vs_base": None if n == "base" else paired_difference(e["rank_ic"], base_ic, int(h)),
                             "by_regime": _by_regime(e["rank_ic"], high)} for n, e in per.items()},
            "baselines": baselines.get(h, {})}
    doc = to_jsonable(doc)
    decide(doc)
    if out_dir is not None:
        write_comparison(doc, out_dir)
    doc["_results"] = raw
    return doc


def _rows(doc: dict, h: str) -> tuple[dict, dict]:
    hd = doc["horizons"][h]
    dec = doc.get("decisions", {})
    rows = {}
    for n, e in hd["variants"].items():
        rows[n] = {**{c: e.get(c) for c in METRIC_COLUMNS},
                   **{f"d_{c}": (e.get("vs_base") or {}).get(c) for c in ("mean_diff", "nw_tstat")},
                   "decision": "reference" if n == "base" else ("kept" if dec.get(n, {}).get("kept") else "not kept")}
    base_rows = {f"{n} (baseline)": {c: e.get(c) for c in METRIC_COLUMNS} for n, e in hd["baselines"].items()}
    return rows, base_rows


TABLE_COLUMNS = [*METRIC_COLUMNS, "d_mean_diff", "d_nw_tstat", "decision"]


def to_markdown(doc: dict) -> str:
    """The comparison as markdown: one table per horizon, then the decisions."""
    m = doc["meta"]
    lines = [f"# {doc['title']}", "",
             f"{m['n_symbols']} symbols, {m['data_start']} -> {m['data_end']}, {m['n_folds']} folds of "
             f"{m['test_days']} test days, models {','.join(m['models'])} (served: {m['served_model']}), "
             f"primary horizon {m['primary_horizon']}. d_* = variant minus base daily RankIC (mean, "
             "Newey-West t with horizon-1 lags).", "", f"Decision rule: {m['decision_rule']}.", ""]

    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, bool) or isinstance(v, str):
            return str(v)
        return str(v) if isinstance(v, int) else f"{v:.4f}"
    for h in doc["horizons"]:
        rows, base_rows = _rows(doc, h)
        lines += [f"## Horizon {h}", "", "| variant | " + " | ".join(TABLE_COLUMNS) + " |",
                  "|---" * (len(TABLE_COLUMNS) + 1) + "|"]
        for n, r in {**rows, **base_rows}.items():
            lines.append(f"| {n} | " + " | ".join(fmt(r.get(c)) for c in TABLE_COLUMNS) + " |")
        lines.append("")
        reg = {n: e["by_regime"] for n, e in doc["horizons"][h]["variants"].items()}
        lines.append("Mean daily RankIC by regime (diagnostic): " + "; ".join(
            f"{n} high-vol {fmt(r['high_vol']['rank_ic_mean'])} ({r['high_vol']['n_days']} d) / low-vol "
            f"{fmt(r['low_vol']['rank_ic_mean'])} ({r['low_vol']['n_days']} d)" for n, r in reg.items()))
        lines.append("")
    lines += ["## Decisions", ""] + [f"- **{n}**: {'kept' if d['kept'] else 'not kept'} ({d['reason']})"
                                     for n, d in doc.get("decisions", {}).items()]
    return "\n".join(lines) + "\n"


def to_html(doc: dict) -> str:
    """A self-contained page in the tear-sheet style (no figures, no network)."""
    m = doc["meta"]
    body = [f"<h1>{html.escape(doc['title'])}</h1>",
            f"<p class='note'>All numbers are out-of-sample walk-forward on the same folds for every variant. "
            f"Served model: {html.escape(m['served_model'])}. d_mean_diff / d_nw_tstat = variant minus base "
            f"daily RankIC, Newey-West t with horizon-1 lags. Decision rule: {html.escape(m['decision_rule'])}.</p>",
            _table({k: {"value": v if not isinstance(v, (list, dict)) else json.dumps(v)} for k, v in m.items()},
                   ["value"], "meta")]
    for h in doc["horizons"]:
        rows, base_rows = _rows(doc, h)
        body += [f"<h2>Horizon {html.escape(h)} days</h2>", _table({**rows, **base_rows}, TABLE_COLUMNS, "variant")]
        reg = {n: {f"{k}_{c}": r[k][c] for k in ("high_vol", "low_vol") for c in ("rank_ic_mean", "n_days")}
               for n, r in ((n, e["by_regime"]) for n, e in doc["horizons"][h]["variants"].items())}
        body += ["<h3>Mean daily RankIC by regime (diagnostic)</h3>",
                 _table(reg, ["high_vol_rank_ic_mean", "high_vol_n_days", "low_vol_rank_ic_mean", "low_vol_n_days"],
                        "variant")]
    dec = {n: {"decision": "kept" if d["kept"] else "not kept", "reason": d["reason"]}
           for n, d in doc.get("decisions", {}).items()}
    body += ["<h2>Decisions</h2>", _table(dec, ["decision", "reason"], "variant")]
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(doc['title'])}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")


def write_comparison(doc: dict, out_dir) -> dict:
    """Write comparison.json, comparison.md and comparison.html; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in doc.items() if not k.startswith("_")}
    paths = {"json": out / "comparison.json", "md": out / "comparison.md", "html": out / "comparison.html"}
    paths["json"].write_text(json.dumps(to_jsonable(clean), indent=1, allow_nan=False))
    paths["md"].write_text(to_markdown(clean))
    paths["html"].write_text(to_html(clean), encoding="utf-8")
    return paths


__all__ = ["VARIANTS", "KEEP_NW_T", "compare_variants", "decide", "paired_difference", "served_model",
           "parse_variants", "variant_config", "write_comparison", "to_markdown", "to_html"]
