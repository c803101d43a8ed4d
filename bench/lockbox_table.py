"""The before/in-lockbox table of issue 12, compiled from backtests' ``metrics.json``.

Each run directory is the ``--out`` of a ``technic backtest ... --lockbox DATE`` (or of ``technic
evaluate --lockbox DATE``). One row per (run, period, model): the mean daily RankIC of every model,
factor and baseline of that period, with the served model's difference to the better of 12-1
momentum and 5-day reversal (paired Newey-West t) and the null model's RankIC. Writes
``<name>.json`` + ``<name>.md`` under ``bench/results`` (or ``--results``). Usage::

    .venv/bin/python bench/lockbox_table.py --run full=OUT1 --run half1=OUT2 --run half2=OUT3 \
        [--horizon 5] [--name issue12_lockbox]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import write_results  # noqa: E402


def period_rows(run: str, doc: dict, h: str) -> list[dict]:
    """One row per period of a metrics doc: every RankIC plus the served-vs-best comparison."""
    lock = doc.get("lockbox")
    if not lock:
        raise SystemExit(f"{run}: metrics.json has no lockbox periods (run the backtest with --lockbox)")
    rows = []
    whole = doc.get("comparison", {}).get(h)
    periods = {"whole": None, **lock["periods"]}
    for period, d in periods.items():
        if period == "whole":
            ric = {n: e["metrics"]["rank_ic_mean"] for kind in ("models", "baselines")
                   for n, e in doc["horizons"][h][kind].items() if "rank_ic_mean" in (e.get("metrics") or {})}
            comp, start, end = whole, doc["meta"]["period"]["start"], doc["meta"]["period"]["end"]
        else:
            ric, comp, start, end = d[h]["rank_ic"], d[h]["comparison"], d["start"], d["end"]
        rows.append({"run": run, "period": period, "start": start, "end": end,
                     "served": comp["served"], "best_baseline": comp.get("best_baseline"),
                     "served_minus_best": comp.get("vs_best_mean_diff"), "nw_t": comp.get("vs_best_nw_tstat"),
                     "n_days": comp.get("vs_best_n_days"), **{n: float(v) for n, v in ric.items() if v is not None}})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", action="append", required=True, help="NAME=DIR (a backtest's --out)")
    ap.add_argument("--horizon", default="5")
    ap.add_argument("--name", default="issue12_lockbox")
    ap.add_argument("--results", type=Path, default=None)
    args = ap.parse_args()
    rows, meta = [], {"horizon": args.horizon, "runs": {}}
    for spec in args.run:
        name, _, path = spec.partition("=")
        doc = json.loads((Path(path) / "metrics.json").read_text())
        rows += period_rows(name, doc, args.horizon)
        m = doc.get("meta", {})
        meta["runs"][name] = {k: m.get(k) for k in ("served", "lag", "universe", "n_symbols_evaluated", "seed")
                              if m.get(k) is not None}
        meta["lockbox"] = doc["lockbox"]["date"]
    paths = write_results(args.name, rows, meta, args.results)
    print(f"wrote {paths[0]} and {paths[1]}")


if __name__ == "__main__":
    main()
