"""The stream sees the same split-consistent fundamentals as the batch panel.

Fundamentals reach the worker as ``technic.fundamentals`` records built by the publisher from
the loaded (already adjusted) frame; the pipeline applies them point in time. A pass-through
scorer reports every valuation feature's value in ``top_contributions``, so the streamed values
can be compared with the batch panel, bar by bar, for both price bases.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from stream.stages.models import ModelSource
from stream.stages.pipeline import PipelineConfig, ScoringPipeline
from stream.tools.publisher import bar_records, fundamental_records
from technic.data import clean_bars, load_bars, load_fundamentals
from technic.features.batch import compute_features

FIX = Path(__file__).resolve().parents[1] / "fixtures"
FEATS = ["earnings_yield", "book_to_price", "sales_to_price", "log_market_cap", "ebit_to_ev"]


class PassThrough:
    """score = 0; contributions = every feature with its value."""

    version = "passthrough"
    feature_names = FEATS
    horizons = [5]
    win_prob = None

    seq_len = 0

    def predict(self, X, history=None, top_k=5, groups=None):
        return {"scores": {5: np.zeros(len(X))}, "win_prob": None,
                "contributions": [[(f, float(X[i, j]), 0.0) for j, f in enumerate(FEATS)] for i in range(len(X))]}


def streamed(bars, fund):
    p = ScoringPipeline(ModelSource(None, scorer=PassThrough()), sectors={},
                        config=PipelineConfig(grace_s=1e9, top_k=len(FEATS)))
    outs = []
    for i, (_, _, v) in enumerate(fundamental_records(fund)):
        outs += p.on_fundamental(v, offset=i)
    for i, (_, _, v) in enumerate(bar_records(bars)):
        outs += p.on_bar(v, "technic.bars", 0, i)
    outs += p.flush()
    vals = {}
    for o in outs:
        if o.kind == "scores":
            for c in o.value["top_contributions"]:
                vals[(o.value["symbol"], o.value["ts"], c["feature"])] = np.nan if c["value"] is None else c["value"]
    return vals


def raw_bars(bars):
    out = bars.copy()
    for sym, d in (("AAPL", "2014-06-09"), ("NFLX", "2015-07-15")):
        m = ((out["symbol"] == sym) & (out["date"] < d)).to_numpy()
        out.loc[m, ["open", "high", "low", "close"]] *= 7
        out.loc[m, "volume"] /= 7
    return out


@pytest.mark.parametrize("price_basis", ["adjusted", "raw"])
def test_stream_valuations_equal_batch_with_split_adjusted_inputs(price_basis):
    bars = clean_bars(load_bars(FIX / "bars_splits.csv.gz"))[0]
    adjusted_close = bars[bars["symbol"] == "AAPL"].sort_values("date")["close"].to_numpy()
    if price_basis == "raw":
        bars = raw_bars(bars)
    fund = load_fundamentals(FIX / "fundamentals_splits.csv", splits=FIX / "splits_small.csv", price_basis=price_basis)
    # the published records carry the adjusted counts (AAPL's FY2013 report: x7 on adjusted bars)
    recs = [orjson.loads(v) for _, _, v in fundamental_records(fund)]
    aapl13 = [r for r in recs if r["symbol"] == "AAPL" and r["period_end"] == "2013-09-28"]
    reported = load_fundamentals(FIX / "fundamentals_splits.csv", adjust_splits=False).set_index(
        ["symbol", "period_end"]).loc[("AAPL", "2013-09-28"), "shares"]
    expect = [reported * 7] if price_basis == "adjusted" else [reported, reported * 7]
    assert [r["fields"]["shares"] for r in aapl13] == pytest.approx(expect, rel=1e-15)

    batch = compute_features(bars, fund)
    got = streamed(bars, fund)
    n = 0
    for (d, sym), row in batch[FEATS].iterrows():
        for f in FEATS:
            a, b = got[(sym, d.strftime("%Y-%m-%d"), f)], row[f]
            assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, rel=1e-12), (sym, d, f)
            n += 1
    assert n == len(batch) * len(FEATS)
    # and the streamed market cap moves with the price return (the split-adjusted close) across
    # AAPL's split, whichever price basis the bars are on
    lmc = np.array([got[("AAPL", d.strftime("%Y-%m-%d"), "log_market_cap")]
                    for d in batch.xs("AAPL", level="symbol").index])
    step = np.diff(lmc - np.log(adjusted_close))
    assert np.nanmax(np.abs(step)) < np.log(1.1)
