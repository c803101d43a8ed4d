"""Metrics against independent oracles (plain loops, scipy, hand-worked examples) + properties."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from technic.evaluation import metrics as M


def make_panel(n_dates=60, n_sym=40, signal=0.3, seed=0, nan_frac=0.05):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2019-06-03", periods=n_dates)
    idx = pd.MultiIndex.from_product([dates, [f"S{i:03d}" for i in range(n_sym)]], names=["date", "symbol"])
    f = rng.normal(size=len(idx))
    y = signal * f + rng.normal(size=len(idx))
    pred = pd.Series(f, idx)
    lab = pd.Series(y * 0.02, idx)
    pred[rng.random(len(idx)) < nan_frac] = np.nan
    lab[rng.random(len(idx)) < nan_frac] = np.nan
    return pred, lab


def per_date(pred, lab):
    for d in pred.index.get_level_values(0).unique():
        p, y = pred.xs(d, level=0), lab.xs(d, level=0)
        ok = p.notna() & y.notna()
        yield d, p[ok].values, y[ok].values, p[ok].index


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_daily_ic_matches_scipy(method):
    pred, lab = make_panel()
    # a thin date (< 5 pairs) and a constant-pred date must be skipped
    d_thin, d_const = pred.index.levels[0][3], pred.index.levels[0][7]
    pred.loc[d_thin] = np.nan
    pred.loc[(d_thin, "S000"):(d_thin, "S003")] = [1.0, 2.0, 3.0, 4.0]
    lab.loc[(d_thin, "S000"):(d_thin, "S003")] = [1.0, 2.0, 3.0, 4.0]
    pred.loc[d_const] = 1.0
    got = M.daily_ic(pred, lab, method=method)
    fn = stats.pearsonr if method == "pearson" else stats.spearmanr
    want = {d: fn(p, y)[0] for d, p, y, _ in per_date(pred, lab) if len(p) >= 5 and np.ptp(p) > 0}
    assert d_thin not in got.index and d_const not in got.index
    assert list(got.index) == sorted(want)
    np.testing.assert_allclose(got.values, [want[d] for d in sorted(want)], rtol=1e-10, atol=1e-12)


def test_newey_west_hand_example_and_matrix_oracle():
    # x = 1..4, L = 1: gamma0 = 1.25, gamma1 = 0.3125, S = 1.25 + 2*0.5*0.3125 = 1.5625
    # var(mean) = 1.5625 / 4 -> se = 0.625 -> t = 2.5 / 0.625 = 4
    assert M.newey_west_se([1, 2, 3, 4], 1) == pytest.approx(0.625)
    assert M.ic_summary([1, 2, 3, 4], nw_lags=1)["nw_tstat"] == pytest.approx(4.0)
    rng = np.random.default_rng(1)
    x = np.convolve(rng.normal(size=300), np.ones(5), "valid") * 0.01 + 0.002
    n = len(x)
    for L in (0, 1, 4, 10):
        e = x - x.mean()
        lagmat = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
        W = np.where(lagmat <= L, 1.0 - lagmat / (L + 1.0), 0.0)
        se_oracle = math.sqrt(e @ W @ e / n**2)
        assert M.newey_west_se(x, L) == pytest.approx(se_oracle, rel=1e-12)


def test_ic_summary_fields():
    rng = np.random.default_rng(2)
    x = rng.normal(0.03, 0.1, size=250)
    s = M.ic_summary(np.r_[x, np.nan], horizon=5)
    assert s["n_days"] == 250 and s["nw_lags"] == 4
    assert s["mean"] == pytest.approx(x.mean())
    assert s["std"] == pytest.approx(x.std(ddof=1))
    assert s["icir"] == pytest.approx(x.mean() / x.std(ddof=1))
    assert s["tstat"] == pytest.approx(stats.ttest_1samp(x, 0).statistic)
    assert s["nw_tstat"] == pytest.approx(x.mean() / M.newey_west_se(x, 4))


def test_hit_rates_match_loops():
    pred, lab = make_panel(n_sym=37)
    hits = total = 0
    top_fracs = []
    for _, p, y, _ in per_date(pred, lab):
        if len(p) < 5:
            continue
        sp, sy = np.sign(p - np.median(p)), np.sign(y - np.median(y))
        ok = (sp != 0) & (sy != 0)
        hits += np.sum(sp[ok] == sy[ok])
        total += ok.sum()
        k = max(1, int(len(p) * 0.1))
        top = np.argsort(-p, kind="stable")[:k]
        top_fracs.append(np.mean(y[top] > np.median(y)))
    assert M.hit_rate(pred, lab) == pytest.approx(hits / total)
    assert M.top_decile_hit_rate(pred, lab) == pytest.approx(np.mean(top_fracs))


def test_quantile_returns_match_loop():
    pred, lab = make_panel(n_dates=20, n_sym=53)
    got = M.quantile_returns(pred, lab, n_quantiles=5)
    for d, p, y, _ in per_date(pred, lab):
        order = np.argsort(p, kind="stable")
        rank = np.empty(len(p), int)
        rank[order] = np.arange(1, len(p) + 1)
        b = np.ceil(rank * 5 / len(p)).astype(int)
        for q in range(1, 6):
            assert got.loc[d, q] == pytest.approx(y[b == q].mean())
        sizes = np.bincount(b)[1:]
        assert sizes.max() - sizes.min() <= 1  # near-equal buckets
    assert got.mean().shape == (5,)


def long_short_oracle(pred, lab, h, cost_bps, offset=0):
    """Plain-loop book: every h-th usable date, k names per leg, costs on traded notional."""
    rows, prev = [], {}
    usable = [(d, p, y, s) for d, p, y, s in per_date(pred, lab) if len(p) >= 5]
    for d, p, y, syms in usable[offset::h]:
        k = max(1, int(len(p) * 0.1))
        order = np.argsort(-p, kind="stable")
        top, bot = order[:k], np.argsort(p, kind="stable")[:k]
        w = {syms[i]: 1.0 / k for i in top} | {syms[i]: -1.0 / k for i in bot}
        traded = sum(abs(w.get(s, 0.0) - prev.get(s, 0.0)) for s in set(w) | set(prev))
        gross = y[top].mean() - y[bot].mean()
        rows.append((d, gross, traded, gross - traded * cost_bps * 1e-4))
        prev = w
    return pd.DataFrame(rows, columns=["date", "gross", "traded", "net"]).set_index("date")


@pytest.mark.parametrize("offset", [0, 2])
def test_long_short_matches_loop(offset):
    pred, lab = make_panel(n_dates=40, n_sym=45)
    got = M.long_short_returns(pred, lab, horizon=3, cost_bps=15, offset=offset)
    want = long_short_oracle(pred, lab, 3, 15, offset)
    assert list(got.index) == list(want.index)
    for c in ("gross", "traded", "net"):
        np.testing.assert_allclose(got[c].values, want[c].values, rtol=1e-10)
    assert got["traded"].iloc[0] == pytest.approx(2.0)
    np.testing.assert_allclose(got["turnover"], got["traded"] / 4)


def test_sharpe_drawdown_annualized_hand_examples():
    r = [0.1, -0.5, 0.2]  # equity 1.1, 0.55, 0.66
    assert M.max_drawdown(r) == pytest.approx(-0.5)
    assert M.annualized_return(r, periods_per_year=3) == pytest.approx(0.66 - 1)
    assert M.annualized_return([0.01] * 252) == pytest.approx(1.01**252 - 1)
    assert M.max_drawdown([-0.1, 0.05]) == pytest.approx(-0.1)
    assert M.max_drawdown([0.01, 0.02]) == 0.0
    x = np.array([0.01, 0.03, -0.02, 0.0])
    assert M.sharpe(x, 12) == pytest.approx(x.mean() / x.std(ddof=1) * np.sqrt(12))
    assert math.isnan(M.sharpe([0.01, 0.01]))


def labels_frame(lab, h=5):
    med = lab.groupby(level=0).transform("median")
    return pd.DataFrame({f"fwd_ret_{h}": lab, f"excess_{h}": lab - med})


SUMMARY_KEYS = {"rank_ic_mean", "rank_ic_std", "rank_icir", "rank_ic_tstat", "rank_ic_nw_tstat",
                "ic_mean", "hit_rate", "top_decile_hit_rate", "long_short_ann_return", "sharpe_net",
                "max_drawdown", "turnover", "n_days"}


def test_random_predictions_have_no_skill():
    pred, lab = make_panel(n_dates=250, n_sym=60, signal=0.0, seed=5)
    rng = np.random.default_rng(9)
    s = M.summarize(pd.Series(rng.normal(size=len(pred)), pred.index), labels_frame(lab), 5)
    assert SUMMARY_KEYS <= set(s)
    assert abs(s["rank_ic_tstat"]) < 3 and abs(s["rank_ic_nw_tstat"]) < 3
    assert abs(s["rank_ic_mean"]) < 0.02
    assert abs(s["hit_rate"] - 0.5) < 0.02


def test_shuffled_labels_give_zero_ic():
    pred, lab = make_panel(n_dates=200, n_sym=60, signal=0.5, seed=3, nan_frac=0)
    shuffled = pd.Series(np.random.default_rng(4).permutation(lab.values), lab.index)
    assert abs(M.ic_summary(M.daily_ic(pred, shuffled, "spearman"))["tstat"]) < 3
    assert M.ic_summary(M.daily_ic(pred, lab, "spearman"))["tstat"] > 10


def test_perfect_predictor():
    _, lab = make_panel(n_dates=30, n_sym=50, nan_frac=0)
    labels = labels_frame(lab)
    s = M.summarize(labels["excess_5"] * 3 + 1, labels, 5, cost_bps=0)
    assert s["rank_ic_mean"] == pytest.approx(1.0) and s["ic_mean"] == pytest.approx(1.0)
    assert s["hit_rate"] == 1.0 and s["top_decile_hit_rate"] == 1.0
    assert s["long_short_ann_return"] > 0 and s["max_drawdown"] == 0.0


def test_breakdown_by_year_and_sector():
    pred, lab = make_panel(n_dates=300, n_sym=30)
    labels = labels_frame(lab)
    by_year = M.breakdown(pred, labels, 5, by="year")
    assert set(by_year) == {"2019", "2020"}
    assert sum(v["n_days"] for v in by_year.values()) == M.summarize(pred, labels, 5)["n_days"]
    sectors = {f"S{i:03d}": ("Tech" if i % 2 else "Energy") for i in range(30)}
    by_sec = M.breakdown(pred, labels, 5, by="sector", sectors=sectors)
    assert set(by_sec) == {"Tech", "Energy"}
    tech = [s for s, v in sectors.items() if v == "Tech"]
    sub = pred[pred.index.get_level_values(1).isin(tech)]
    want = M.daily_ic(sub, labels["excess_5"], "spearman").mean()
    assert by_sec["Tech"]["rank_ic_mean"] == pytest.approx(want)
    with pytest.raises(ValueError, match="sectors"):
        M.breakdown(pred, labels, 5, by="sector")
