"""``predictions.parquet``: every backtest's per-date predictions, and the metrics recomputed from it.

Columns (one row per (date, symbol, horizon) of the evaluated universe's test rows):

* ``date``, ``symbol``, ``horizon``, ``fold`` (walk-forward fold that predicted the row);
* ``label``: the evaluation label, ``excess_h`` with the execution lag applied (return from close
  t+lag to close t+lag+h minus the date's median, ``technic.labels``); ``fwd_ret``: the same return
  before the median is subtracted (long-short and equal-weight books);
* ``label_h{g}`` for the IC-decay horizons g (1, 5, 10, 20): ``excess_g`` with the same lag;
* one float column per model, baseline and factor, named exactly as in ``metrics.json``
  (e.g. ``lgbm``, ``blend``, ``null``, ``momentum_12_1``, ``reversal_5``, ``value``).

The file's key-value metadata ``technic`` (JSON) says which column is what (``models``,
``baselines``, ``factors``, ``served``, ``null``), the lag, costs, sectors, and what cannot be
recomputed from predictions (fold table with tree counts, feature importance, selection, timing).

:func:`report` turns (frame, info) into ``metrics.json`` + ``report.html``; the backtest and
``technic evaluate`` both call it on the file as read back, so their outputs are identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from technic.errors import TechnicError

from . import metrics as M
from .portfolio import equal_weight_metrics

VERSION = 1
KEY = b"technic"
FIXED = ("date", "symbol", "horizon", "fold", "label", "fwd_ret")
SKILL_T = 2.0            # a model within 2 standard errors of the null shows no evidence of skill
BASELINE_PAIR = ("momentum_12_1", "reversal_5")


def decay_column(g: int) -> str:
    return f"label_h{int(g)}"


def write_predictions(frame: pd.DataFrame, info: dict, path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq
    path = Path(path)
    missing = [c for c in FIXED if c not in frame.columns]
    if missing:
        raise ValueError(f"predictions frame lacks column(s) {missing}")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[KEY] = json.dumps({"version": VERSION, **info}, default=str).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table.replace_schema_metadata(meta), tmp)
    tmp.replace(path)
    return path


def read_predictions(path) -> tuple[pd.DataFrame, dict]:
    """(frame, info) of a predictions file; a TechnicError names what is wrong with it."""
    import pyarrow.parquet as pq
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as e:
        raise TechnicError(f"{path}: not a readable parquet file ({e})") from None
    raw = (table.schema.metadata or {}).get(KEY)
    if raw is None:
        raise TechnicError(f"{path}: no 'technic' metadata: not a predictions file written by technic backtest")
    info = json.loads(raw)
    if info.get("version") != VERSION:
        raise TechnicError(f"{path}: predictions format version {info.get('version')}, expected {VERSION}")
    frame = table.to_pandas()
    need = list(FIXED) + [c for c in info["models"] + info["baselines"] + info["factors"]]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise TechnicError(f"{path}: missing column(s) {missing}")
    frame["date"] = pd.to_datetime(frame["date"]).astype("datetime64[ns]")
    return frame, info


def _horizon_results(sub: pd.DataFrame, info: dict, h: int) -> dict:
    sub = sub.set_index(["date", "symbol"]).sort_index()
    labels = pd.DataFrame({f"fwd_ret_{h}": sub["fwd_ret"], f"excess_{h}": sub["label"]})
    hres = {"labels": labels, "models": {}, "baselines": {},
            "decay_labels": {int(c[len("label_h"):]): sub[c] for c in sub.columns if c.startswith("label_h")}}
    imp = ((info.get("extras") or {}).get("importance") or {}).get(str(h)) or {}
    for name in info["models"]:
        hres["models"][name] = {"pred": sub[name].rename(name)}
        if imp.get(name):
            hres["models"][name]["importance"] = imp[name]
    for name in info["baselines"] + info["factors"]:
        hres["baselines"][name] = {"pred": sub[name].rename(name)}
    hres["baselines"]["equal_weight"] = {"pred": None, "metrics": equal_weight_metrics(labels[f"fwd_ret_{h}"], h)}
    return hres


def paired(a: pd.Series, b: pd.Series, h: int) -> dict:
    """Mean of the daily difference a - b and its Newey-West t-stat (h - 1 lags)."""
    d = (a - b).dropna()
    s = M.ic_summary(d, horizon=h)
    return {"mean_diff": s["mean"], "nw_tstat": s["nw_tstat"], "n_days": s["n_days"]}


def skill_table(hres: dict, info: dict, h: int) -> dict:
    """Per model: daily-RankIC difference vs the null model and the verdict (GUIDE section 3)."""
    null = info.get("null")
    if not null or null not in hres["models"]:
        return {}
    y = hres["labels"][f"excess_{h}"]
    ic = {n: M.daily_ic(e["pred"], y, "spearman") for n, e in hres["models"].items()}
    out = {}
    for n in hres["models"]:
        if n == null:
            continue
        p = paired(ic[n], ic[null], h)
        p["verdict"] = ("skill" if np.isfinite(p["nw_tstat"]) and p["nw_tstat"] >= SKILL_T
                        else "no evidence of skill")
        out[n] = p
    return out


def comparison(hres: dict, info: dict, h: int) -> dict:
    """The served model against the better of 12-1 momentum and 5-day reversal, and the null."""
    y = hres["labels"][f"excess_{h}"]
    served = info["served"]
    ic = lambda e: M.daily_ic(e["pred"], y, "spearman")  # noqa: E731
    s = ic(hres["models"][served])
    base = {b: ic(hres["baselines"][b]) for b in BASELINE_PAIR if b in hres["baselines"]}
    out = {"served": served, "served_rank_ic": float(s.mean()) if len(s) else None}
    if base:
        best = max(base, key=lambda b: base[b].mean())
        out.update({"best_baseline": best, "best_baseline_rank_ic": float(base[best].mean()),
                    **{f"vs_best_{k}": v for k, v in paired(s, base[best], h).items()}})
    null = info.get("null")
    if null and null in hres["models"]:
        n = ic(hres["models"][null])
        out["null_rank_ic"] = float(n.mean()) if len(n) else None
    return out


def degeneracy(hres: dict, info: dict, h: int) -> dict:
    """Per model: trees kept per fold (median, min; tree models) and the share of tied predictions."""
    out = {}
    folds = [f for f in info.get("folds") or [] if int(f["horizon"]) == h]
    for n, e in hres["models"].items():
        p = e["pred"].dropna()
        d = p.index.get_level_values(0)
        ties = pd.Series(pd.DataFrame({"d": d, "v": p.to_numpy()}).duplicated(keep=False).to_numpy(), index=d)
        row = {"tie_share_mean": float(ties.groupby(level=0).mean().mean()) if len(p) else None}
        trees = [t for f in folds for t in np.atleast_1d((f.get("trees") or {}).get(n, [])) if t is not None]
        if trees and n in ("lgbm", "xgb"):
            row.update(trees_median=float(np.median(trees)), trees_min=int(np.min(trees)))
        out[n] = row
    return out


def evaluate(frame: pd.DataFrame, info: dict, start=None, end=None) -> dict:
    """The tear sheet's ``results`` (see ``tearsheet``) from a predictions frame; ``start``/``end``
    restrict the dates (inclusive)."""
    f = frame
    if start is not None:
        f = f[f["date"] >= pd.Timestamp(start)]
    if end is not None:
        f = f[f["date"] <= pd.Timestamp(end)]
    if f.empty:
        raise TechnicError(f"no predictions between {start or 'the start'} and {end or 'the end'}")
    results = {"meta": {**(info.get("meta") or {}), "served": info["served"], "lag": info["lag"],
                        "period": {"start": str(f["date"].min().date()), "end": str(f["date"].max().date())}},
               "sectors": info.get("sectors"), "horizons": {}, "doc_extra": {"skill": {}, "comparison": {},
                                                                           "degeneracy": {}}}
    for h in sorted(int(x) for x in f["horizon"].unique()):
        hres = _horizon_results(f[f["horizon"] == h], info, h)
        results["horizons"][h] = hres
        for key, fn in (("skill", skill_table), ("comparison", comparison), ("degeneracy", degeneracy)):
            results["doc_extra"][key][str(h)] = fn(hres, info, h)
    extras = info.get("extras") or {}
    results["folds"] = info.get("folds") or []
    for k in ("selection", "timing", "win_prob", "stacking"):
        if extras.get(k):
            results[k] = extras[k]
    return results


def report(path, out_dir, start=None, end=None, lockbox=None, title: str | None = None) -> dict:
    """``metrics.json`` + ``report.html`` in ``out_dir`` from a predictions file; return the metrics doc.
    ``lockbox`` (a date): the served-vs-baseline comparison is also given before and from that date."""
    from .tearsheet import write_tearsheet
    frame, info = read_predictions(path)
    results = evaluate(frame, info, start, end)
    if lockbox is not None:
        cut = pd.Timestamp(lockbox)
        periods = {}
        for name, (a, b) in (("before", (start, cut - pd.Timedelta(days=1))), ("from", (cut, end))):
            try:
                r = evaluate(frame, info, a, b)
            except TechnicError:
                continue
            periods[name] = {"start": r["meta"]["period"]["start"], "end": r["meta"]["period"]["end"],
                             **{str(h): {"comparison": r["doc_extra"]["comparison"][str(h)],
                                         "rank_ic": {n: float(M.daily_ic(e["pred"], hr["labels"][f"excess_{h}"],
                                                                         "spearman").mean())
                                                     for n, e in {**hr["models"], **{
                                                         k: v for k, v in hr["baselines"].items()
                                                         if v["pred"] is not None}}.items()}}
                                for h, hr in r["horizons"].items()}}
        results["doc_extra"]["lockbox"] = {"date": str(cut.date()), "periods": periods}
    paths = write_tearsheet(out_dir, results, title or info.get("title") or "Technic walk-forward backtest")
    doc = json.loads(Path(paths["metrics"]).read_text())
    doc["_paths"] = paths
    doc["_results"] = results
    return doc
