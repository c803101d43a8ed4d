"""The feature registry: every feature declared exactly once.

A feature is a name, a category, an expression built from the operators of
``ops.py``/``rolling.py`` (or, for cross-sectional features, a transform of
another feature), and a one-line description. The lookback is derived from
the expression. Batch and incremental evaluators both read this registry; no
formula exists anywhere else.

Three stages, evaluated in order for each bar timestamp:

``ts``      per-symbol time-series expressions over bar fields
            (open, high, low, close, volume), point-in-time fundamental
            fields and alternative-data fields.
``market``  per-symbol time-series expressions that also need the
            equal-weight market return of the timestamp (``mkt_ret``, from
            ``cross_section.market_return``) and the symbol's ``ret``.
``cs``      pure cross-sectional transforms (rank, z-score, sector-relative)
            of ``ts``/``market`` features at one timestamp.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .ops import Abs, Const, Div, Eq, Exp, Field, Greater, Gt, Less, Log, Lt, Op, Ref, Sign, Sqrt
from .rolling import (EMA, BarsSinceMax, BarsSinceMin, Corr, Cov, Max, Mean, Min, Skew, Slope, Std,
                      Sum, TsRank, Var)

CATEGORIES = ("momentum", "volatility", "volume", "price_pattern", "microstructure",
              "fundamental", "alternative", "cross_sectional")

BAR_FIELDS = ("open", "high", "low", "close", "volume")
ALT_FIELDS = ("sentiment", "news_count", "short_interest", "put_call_ratio")
MARKET_FIELDS = ("ret", "mkt_ret")


@dataclass(frozen=True)
class Feature:
    """A time-series feature: ``expr`` evaluated per symbol, bar by bar."""

    name: str
    category: str
    expr: Op
    description: str
    stage: str = "ts"

    @property
    def lookback(self) -> int:
        return self.expr.lookback


@dataclass(frozen=True)
class CrossSectionFeature:
    """A per-timestamp transform of another feature across all symbols."""

    name: str
    source: str
    transform: str  # rank | zscore | sector_demean | sector_zscore | sector_rank
    description: str
    sign: float = 1.0
    category: str = "cross_sectional"
    stage: str = "cs"
    lookback: int = field(default=1)


# ---------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------
o, h, l, c, v = (Field(f) for f in BAR_FIELDS)
ret = c / Ref(c, 1) - 1
logret = Log(c / Ref(c, 1))
dv = c * v  # dollar volume
hl = Log(h / l)
gap = o / Ref(c, 1) - 1
intraday = c / o - 1
true_range = Greater(h, Ref(c, 1)) - Less(l, Ref(c, 1))


def mom(n: int) -> Op:
    return c / Ref(c, n) - 1


def F(name: str) -> Field:
    return Field(name)


mcap = c * F("shares")
debt = F("long_term_debt") + F("short_term_debt")

_TS: list[Feature] = []


def _add(category: str, name: str, expr: Op, description: str, stage: str = "ts") -> None:
    _TS.append(Feature(name, category, expr, description, stage))


# ---------------------------------------------------------------------------
# momentum (21)
# ---------------------------------------------------------------------------
M = "momentum"
_add(M, "ret_1", ret, "1-bar close-to-close return")
for n in (5, 10, 21, 63, 126, 252):
    _add(M, f"mom_{n}", mom(n), f"{n}-bar price momentum (close / close {n} bars ago - 1)")
_add(M, "mom_12_1", Ref(c, 21) / Ref(c, 252) - 1, "12-1 momentum: return from 252 to 21 bars ago (skips the last month)")
_add(M, "mom_6_1", Ref(c, 21) / Ref(c, 126) - 1, "6-1 momentum: return from 126 to 21 bars ago")
_add(M, "ema_ratio_12_26", EMA(c, 12) / EMA(c, 26) - 1, "MACD as a ratio: EMA12 / EMA26 - 1")
_macd = (EMA(c, 12) - EMA(c, 26)) / c
_add(M, "macd_hist", _macd - EMA(_macd, 9), "MACD histogram (normalized MACD minus its 9-bar EMA signal)")
for n in (20, 50, 200):
    _add(M, f"price_sma_{n}", c / Mean(c, n) - 1, f"close relative to its {n}-bar simple moving average")
_add(M, "sma_50_200", Mean(c, 50) / Mean(c, 200) - 1, "golden/death cross: SMA50 / SMA200 - 1")
_add(M, "slope_logp_20", Slope(Log(c), 20), "OLS slope of log price over 20 bars (trend per bar)")
_add(M, "slope_logp_60", Slope(Log(c), 60), "OLS slope of log price over 60 bars")
_up = Greater(c - Ref(c, 1), 0)
_dn = Greater(Ref(c, 1) - c, 0)
_add(M, "rsi_14", Mean(_up, 14) / (Mean(_up, 14) + Mean(_dn, 14)), "Cutler's RSI over 14 bars, in [0, 1]")
_add(M, "mom_accel_21", mom(21) - Ref(mom(21), 21), "momentum acceleration: 21-bar return minus the previous 21-bar return")
_add(M, "up_days_20", Mean(Gt(ret, 0), 20), "fraction of up bars over the last 20")
_add(M, "mom_risk_adj_63", Div(mom(63), Std(ret, 63) * Sqrt(Const(63.0))), "63-bar return divided by 63-bar volatility (information ratio)")

# ---------------------------------------------------------------------------
# volatility (17)
# ---------------------------------------------------------------------------
V = "volatility"
for n in (5, 10, 20, 60, 120):
    _add(V, f"vol_{n}", Std(ret, n), f"{n}-bar standard deviation of daily returns")
_add(V, "vol_ratio_5_60", Std(ret, 5) / Std(ret, 60), "short vs long volatility ratio (5 / 60 bars)")
_add(V, "parkinson_20", Sqrt(Mean(hl * hl, 20) / (4 * 0.6931471805599453)), "Parkinson high-low volatility over 20 bars")
_add(V, "garman_klass_20", Sqrt(Mean(0.5 * hl * hl - (2 * 0.6931471805599453 - 1) * Log(c / o) * Log(c / o), 20)),
     "Garman-Klass OHLC volatility over 20 bars")
_add(V, "rogers_satchell_20", Sqrt(Mean(Log(h / c) * Log(h / o) + Log(l / c) * Log(l / o), 20)),
     "Rogers-Satchell drift-free OHLC volatility over 20 bars")
_add(V, "atr_14", Mean(true_range, 14) / c, "average true range over 14 bars as a fraction of price")
_add(V, "downside_vol_20", Sqrt(Mean(Less(ret, 0) * Less(ret, 0), 20)), "downside semi-deviation over 20 bars")
_add(V, "upside_vol_20", Sqrt(Mean(Greater(ret, 0) * Greater(ret, 0), 20)), "upside semi-deviation over 20 bars")
_add(V, "vol_of_vol_60", Std(Std(ret, 20), 60), "variability of the 20-bar volatility over 60 bars")
_add(V, "skew_60", Skew(ret, 60), "skewness of daily returns over 60 bars")
_add(V, "max_ret_20", Max(ret, 20), "largest daily return in 20 bars (lottery demand)")
_add(V, "min_ret_20", Min(ret, 20), "smallest daily return in 20 bars (crash risk)")
_add(V, "range_20", (Max(h, 20) - Min(l, 20)) / c, "20-bar high-low range as a fraction of price")
_add(V, "vol_trend_20", Slope(Log(Std(ret, 20)), 20), "trend of log volatility over 20 bars")

# ---------------------------------------------------------------------------
# volume (13)
# ---------------------------------------------------------------------------
VO = "volume"
_add(VO, "log_dollar_volume_20", Log(Mean(dv, 20)), "log of the 20-bar mean dollar volume (liquidity/size)")
_add(VO, "volume_ratio_5_20", Mean(v, 5) / Mean(v, 20), "short vs medium volume ratio")
_add(VO, "volume_ratio_20_120", Mean(v, 20) / Mean(v, 120), "medium vs long volume ratio")
_add(VO, "volume_z_20", (v - Mean(v, 20)) / Std(v, 20), "today's volume z-score against 20 bars")
_add(VO, "volume_cv_20", Std(v, 20) / Mean(v, 20), "coefficient of variation of volume over 20 bars")
_add(VO, "signed_volume_20", Sum(Sign(ret) * v, 20) / Sum(v, 20), "net up-minus-down volume share over 20 bars (OBV flow)")
_add(VO, "price_volume_corr_20", Corr(c, v, 20), "correlation of price and volume over 20 bars")
_add(VO, "ret_volume_corr_20", Corr(Abs(ret), Log(v), 20), "correlation of |return| and log volume over 20 bars")
_add(VO, "volume_slope_20", Slope(Log(v), 20), "trend of log volume over 20 bars")
_tp = (h + l + c) / 3
_add(VO, "mfi_14", Sum(Gt(_tp, Ref(_tp, 1)) * _tp * v, 14) / Sum(_tp * v, 14), "money flow index over 14 bars, in [0, 1]")
_add(VO, "vwap_ratio_20", c / (Sum(dv, 20) / Sum(v, 20)) - 1, "close relative to the 20-bar volume-weighted price")
_add(VO, "volume_max_ratio_20", v / Max(v, 20), "today's volume relative to the 20-bar maximum")
_add(VO, "volume_tsrank_20", TsRank(v, 20), "time-series percentile of today's volume in 20 bars")

# ---------------------------------------------------------------------------
# price patterns (19)
# ---------------------------------------------------------------------------
P = "price_pattern"
_stoch = (c - Min(l, 14)) / (Max(h, 14) - Min(l, 14))
_add(P, "stoch_k_14", _stoch, "stochastic %K: close position in the 14-bar range")
_add(P, "stoch_d_14", Mean(_stoch, 3), "stochastic %D: 3-bar mean of %K")
_add(P, "dist_high_252", c / Max(h, 252) - 1, "distance from the 52-week high")
_add(P, "dist_low_252", c / Min(l, 252) - 1, "distance from the 52-week low")
_add(P, "dist_high_20", c / Max(h, 20) - 1, "distance from the 20-bar high")
_add(P, "dist_low_20", c / Min(l, 20) - 1, "distance from the 20-bar low")
_add(P, "bars_since_high_60", BarsSinceMax(h, 60) / 60, "bars since the 60-bar high, as a fraction of 60")
_add(P, "bars_since_low_60", BarsSinceMin(l, 60) / 60, "bars since the 60-bar low, as a fraction of 60")
_add(P, "bollinger_pos_20", (c - Mean(c, 20)) / (2 * Std(c, 20)), "position within the 20-bar Bollinger bands (+-2 sd)")
_add(P, "candle_body", (c - o) / (h - l), "candle body as a fraction of the day's range")
_add(P, "upper_shadow", (h - Greater(o, c)) / (h - l), "upper shadow as a fraction of the day's range")
_add(P, "lower_shadow", (Less(o, c) - l) / (h - l), "lower shadow as a fraction of the day's range")
_add(P, "body_mean_5", Mean((c - o) / (h - l), 5), "5-bar mean candle body (buying/selling pressure)")
_add(P, "intraday_ret", intraday, "open-to-close return of the bar")
_add(P, "intraday_mean_20", Mean(intraday, 20), "20-bar mean open-to-close return")
_add(P, "higher_highs_10", Mean(Gt(h, Ref(h, 1)), 10), "fraction of bars with a higher high over 10")
_add(P, "lower_lows_10", Mean(Lt(l, Ref(l, 1)), 10), "fraction of bars with a lower low over 10")
_add(P, "close_tsrank_20", TsRank(c, 20), "time-series percentile of the close in 20 bars")
_add(P, "close_tsrank_60", TsRank(c, 60), "time-series percentile of the close in 60 bars")

# ---------------------------------------------------------------------------
# microstructure (10), from OHLCV only
# ---------------------------------------------------------------------------
MI = "microstructure"
_add(MI, "amihud_20", Mean(Abs(ret) / dv, 20) * 1e9, "Amihud illiquidity: mean |return| per dollar traded (x1e9), 20 bars")
_dc = c - Ref(c, 1)
_add(MI, "roll_spread_20", 2 * Sqrt(Greater(-Cov(_dc, Ref(_dc, 1), 20), 0)) / c,
     "Roll (1984) effective spread from the serial covariance of price changes (0 when it is positive)")
_beta_cs = hl * hl + Ref(hl, 1) * Ref(hl, 1)
_gamma_cs = Log(Greater(h, Ref(h, 1)) / Less(l, Ref(l, 1)))
_gamma_cs = _gamma_cs * _gamma_cs
_k = 3 - 2 * 2 ** 0.5
_alpha_cs = (Sqrt(2 * _beta_cs) - Sqrt(_beta_cs)) / _k - Sqrt(_gamma_cs / _k)
_cs_spread = 2 * (Exp(_alpha_cs) - 1) / (1 + Exp(_alpha_cs))
_add(MI, "corwin_schultz_20", Mean(Greater(_cs_spread, 0), 20), "Corwin-Schultz (2012) high-low spread estimator, 20-bar mean")
_add(MI, "clv_20", Mean(((c - l) - (h - c)) / (h - l), 20), "close location value (-1..1) averaged over 20 bars")
_add(MI, "overnight_gap", gap, "overnight gap: open / previous close - 1")
_add(MI, "gap_mean_20", Mean(gap, 20), "mean overnight gap over 20 bars")
_add(MI, "gap_vol_20", Std(gap, 20), "volatility of overnight gaps over 20 bars")
_add(MI, "hl_range_mean_20", Mean(hl, 20), "mean log high/low range over 20 bars")
_add(MI, "zero_return_days_20", Mean(Eq(ret, 0), 20), "fraction of zero-return bars over 20 (Lesmond illiquidity)")
_add(MI, "intraday_overnight_vol_20", Std(intraday, 20) / Std(gap, 20), "intraday vs overnight volatility ratio over 20 bars")

# ---------------------------------------------------------------------------
# fundamentals (24), point-in-time fields; valuations use price x shares
# ---------------------------------------------------------------------------
FU = "fundamental"
ni, rev, eq, ta = F("net_income"), F("total_revenue"), F("total_equity"), F("total_assets")
ocf = F("operating_cash_flow")
_add(FU, "earnings_yield", ni / mcap, "net income / market cap (E/P)")
_add(FU, "book_to_price", eq / mcap, "total equity / market cap (B/P)")
_add(FU, "sales_to_price", rev / mcap, "revenue / market cap (S/P)")
_add(FU, "cashflow_to_price", ocf / mcap, "operating cash flow / market cap")
_add(FU, "fcf_yield", (ocf + F("capex")) / mcap, "free cash flow (OCF + capex, capex negative) / market cap")
_add(FU, "log_market_cap", Log(mcap), "log market capitalization (close x shares)")
_add(FU, "ebit_to_ev", F("ebit") / (mcap + debt - F("cash")), "EBIT / enterprise value")
_add(FU, "buyback_yield", -F("stock_repurchase") / mcap, "net share repurchases / market cap")
_add(FU, "roe", ni / eq, "return on equity")
_add(FU, "roa", ni / ta, "return on assets")
_add(FU, "gross_margin", F("gross_profit") / rev, "gross profit / revenue")
_add(FU, "operating_margin", F("operating_income") / rev, "operating income / revenue")
_add(FU, "net_margin", ni / rev, "net income / revenue")
_add(FU, "debt_to_equity", debt / eq, "total debt / equity")
_add(FU, "liabilities_to_assets", F("total_liabilities") / ta, "leverage: total liabilities / total assets")
_add(FU, "current_ratio", F("total_current_assets") / F("total_current_liabilities"), "current assets / current liabilities")
_add(FU, "cash_to_assets", F("cash") / ta, "cash / total assets")
_add(FU, "asset_turnover", rev / ta, "revenue / total assets")
_add(FU, "accruals", (ni - ocf) / ta, "accruals: (net income - operating cash flow) / assets")
_add(FU, "rnd_intensity", F("rnd") / rev, "R&D expense / revenue")
_add(FU, "interest_coverage", F("ebit") / Abs(F("interest_expense")), "EBIT / interest expense")
_add(FU, "revenue_growth", F("revenue_growth"), "year-over-year revenue growth (previous fiscal period)")
_add(FU, "earnings_growth", F("earnings_growth"), "year-over-year net income change / |previous net income|")
_add(FU, "asset_growth", F("asset_growth"), "year-over-year total asset growth (investment factor)")

# ---------------------------------------------------------------------------
# alternative data (10): NaN when no alt input is given
# ---------------------------------------------------------------------------
AL = "alternative"
sent, news, si, pcr = (F(f) for f in ALT_FIELDS)
_add(AL, "sentiment", sent, "latest daily news sentiment score in [-1, 1]")
_add(AL, "sentiment_ema_5", EMA(sent, 5), "5-bar EMA of news sentiment")
_add(AL, "sentiment_mean_20", Mean(sent, 20), "20-bar mean news sentiment")
_add(AL, "sentiment_z_60", (sent - Mean(sent, 60)) / Std(sent, 60), "sentiment z-score against 60 bars")
_add(AL, "news_count_5", Mean(news, 5), "mean daily news count over 5 bars")
_add(AL, "news_surge_5_60", Mean(news, 5) / Mean(news, 60), "news attention surge: 5-bar vs 60-bar mean count")
_add(AL, "short_interest_days_to_cover", si / Mean(v, 20), "short interest / 20-bar mean volume (days to cover)")
_add(AL, "short_interest_change_20", si / Ref(si, 20) - 1, "20-bar change of short interest")
_add(AL, "short_interest_ratio", si / F("shares"), "short interest / shares outstanding")
_add(AL, "put_call_mean_5", Mean(pcr, 5), "5-bar mean option put/call ratio")
_add(AL, "put_call_z_60", (pcr - Mean(pcr, 60)) / Std(pcr, 60), "put/call ratio z-score against 60 bars")
_add(AL, "sentiment_x_news", sent * Log(1 + news), "sentiment weighted by log(1 + news count)")

# ---------------------------------------------------------------------------
# market-relative (stage "market"): need the equal-weight market return
# ---------------------------------------------------------------------------
CS = "cross_sectional"
r, m = Field("ret"), Field("mkt_ret")
_beta = Cov(r, m, 60) / Var(m, 60)
_add(CS, "beta_60", _beta, "beta to the equal-weight universe over 60 bars", stage="market")
_add(CS, "corr_mkt_60", Corr(r, m, 60), "correlation with the equal-weight universe over 60 bars", stage="market")
_add(CS, "resid_mom_60", Sum(r, 60) - _beta * Sum(m, 60), "residual momentum: 60-bar return net of beta x market", stage="market")
_add(CS, "idio_vol_60", Std(r, 60) * Sqrt(1 - Corr(r, m, 60) * Corr(r, m, 60)), "idiosyncratic volatility (60 bars)", stage="market")
_add(CS, "rel_strength_20", Sum(r, 20) - Sum(m, 20), "20-bar return in excess of the market (summed daily)", stage="market")

CROSS_SECTION: list[CrossSectionFeature] = [
    CrossSectionFeature("cs_rank_mom_12_1", "mom_12_1", "rank", "cross-sectional rank of 12-1 momentum"),
    CrossSectionFeature("cs_rank_mom_21", "mom_21", "rank", "cross-sectional rank of 1-month momentum"),
    CrossSectionFeature("cs_z_reversal_5", "mom_5", "zscore", "cross-sectional z-score of 5-bar reversal (-mom_5)", sign=-1.0),
    CrossSectionFeature("cs_rank_vol_20", "vol_20", "rank", "cross-sectional rank of 20-bar volatility"),
    CrossSectionFeature("cs_rank_dollar_volume", "log_dollar_volume_20", "rank", "cross-sectional rank of dollar volume"),
    CrossSectionFeature("cs_rank_amihud", "amihud_20", "rank", "cross-sectional rank of Amihud illiquidity"),
    CrossSectionFeature("cs_z_resid_mom", "resid_mom_60", "zscore", "cross-sectional z-score of residual momentum"),
    CrossSectionFeature("sector_rel_mom_126", "mom_126", "sector_demean", "6-month momentum minus its GICS sector mean"),
    CrossSectionFeature("sector_z_mom_21", "mom_21", "sector_zscore", "1-month momentum z-scored within its GICS sector"),
    CrossSectionFeature("sector_rel_vol_60", "vol_60", "sector_demean", "60-bar volatility minus its sector mean"),
    CrossSectionFeature("sector_rank_earnings_yield", "earnings_yield", "sector_rank", "earnings yield ranked within its sector"),
    CrossSectionFeature("sector_z_book_to_price", "book_to_price", "sector_zscore", "book-to-price z-scored within its sector"),
]

TS_FEATURES: list[Feature] = [f for f in _TS if f.stage == "ts"]
MARKET_FEATURES: list[Feature] = [f for f in _TS if f.stage == "market"]
ALL_FEATURES = TS_FEATURES + MARKET_FEATURES + CROSS_SECTION
FEATURE_NAMES: list[str] = [f.name for f in ALL_FEATURES]
FUNDAMENTAL_INPUTS = tuple(sorted({f for feat in TS_FEATURES for f in feat.expr.fields()}
                                  - set(BAR_FIELDS) - set(ALT_FIELDS)))


def _check() -> None:
    names = [f.name for f in ALL_FEATURES]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"duplicate feature names: {sorted(dup)}")
    for f in ALL_FEATURES:
        if f.category not in CATEGORIES:
            raise ValueError(f"feature {f.name}: unknown category {f.category!r}")
    known = set(names)
    for cs in CROSS_SECTION:
        if cs.source not in known:
            raise ValueError(f"{cs.name}: unknown source feature {cs.source!r}")


_check()


def registry_hash() -> str:
    """SHA-256 over every declaration: changes whenever any formula changes."""
    h = hashlib.sha256()
    for f in ALL_FEATURES:
        body = repr(f.expr) if isinstance(f, Feature) else f"{f.transform}({f.source})*{f.sign}"
        h.update(f"{f.name}|{f.category}|{f.stage}|{body}\n".encode())
    return h.hexdigest()


def describe() -> list[dict]:
    """One dict per feature: name, category, stage, lookback, description, expression."""
    out = []
    for f in ALL_FEATURES:
        expr = repr(f.expr) if isinstance(f, Feature) else f"{f.transform}({'-' if f.sign < 0 else ''}{f.source})"
        lb = f.lookback if isinstance(f, Feature) else _lookback_of(f.source)
        out.append({"name": f.name, "category": f.category, "stage": f.stage, "lookback": lb,
                    "description": f.description, "expression": expr})
    return out


def _lookback_of(name: str) -> int:
    for f in TS_FEATURES + MARKET_FEATURES:
        if f.name == name:
            return f.lookback
    return 1
