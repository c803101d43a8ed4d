"""The factor library: classic, literature-signed signals, each declared once.

A factor is a list of terms, each a registry feature with a sign (``+1``: higher value, higher
expected return, as the literature finds it). Its score on one date is the per-date z-score of
the terms (see ``scores``), optionally neutralized within GICS sectors. Every input is a feature
of the registry, so the stream computes factors from the feature rows it already has.

Nothing here is fitted and nothing was chosen by looking at this project's data: the signs are
the published ones, the themes and weights of the composite are equal.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    """One input of a factor: ``sign * feature`` (``transform="sector_mean"``: the mean of the
    feature over the symbol's GICS sector on that date, e.g. industry momentum)."""

    feature: str
    sign: float = 1.0
    transform: str = "value"   # value | sector_mean


@dataclass(frozen=True)
class Factor:
    name: str
    theme: str
    terms: tuple[Term, ...]
    description: str
    reference: str


FACTORS: tuple[Factor, ...] = (
    Factor("momentum_12_1", "momentum", (Term("mom_12_1"),),
           "return from 252 to 21 bars ago", "Jegadeesh & Titman (1993)"),
    Factor("reversal_5", "reversal", (Term("mom_5", -1.0),),
           "minus the 5-bar return (last week's losers bounce)", "Lehmann (1990)"),
    Factor("reversal_21", "reversal", (Term("mom_21", -1.0),),
           "minus the 21-bar return (one-month reversal)", "Jegadeesh (1990)"),
    Factor("industry_momentum", "momentum", (Term("mom_126", 1.0, "sector_mean"),),
           "equal-weight mean 6-month return of the symbol's GICS sector", "Moskowitz & Grinblatt (1999)"),
    Factor("high_52w", "momentum", (Term("dist_high_252"),),
           "closeness to the 52-week high", "George & Hwang (2004)"),
    Factor("value", "value", (Term("earnings_yield"), Term("book_to_price"), Term("sales_to_price"),
                              Term("cashflow_to_price")),
           "composite of E/P, B/P, S/P and CF/P", "Fama & French (1992); Lakonishok, Shleifer & Vishny (1994)"),
    Factor("quality", "quality", (Term("roe"), Term("roa"), Term("gross_margin"), Term("accruals", -1.0),
                                  Term("liabilities_to_assets", -1.0)),
           "profitability, low accruals, low leverage", "Sloan (1996); Asness, Frazzini & Pedersen (2019)"),
    Factor("low_risk", "low_risk", (Term("beta_60", -1.0), Term("vol_60", -1.0)),
           "low beta and low volatility", "Frazzini & Pedersen (2014); Ang, Hodrick, Xing & Zhang (2006)"),
    Factor("size", "size", (Term("log_market_cap", -1.0),),
           "small minus big (log market cap)", "Banz (1981)"),
)

FACTOR_NAMES: tuple[str, ...] = tuple(f.name for f in FACTORS)
TRANSFORMS = ("value", "sector_mean")


def factor_by_name(name: str) -> Factor:
    for f in FACTORS:
        if f.name == name:
            return f
    raise KeyError(f"unknown factor {name!r}; expected one of {', '.join(FACTOR_NAMES)}")


def factor_inputs(names=FACTOR_NAMES) -> list[str]:
    """The registry features the named factors read, in first-use order."""
    out: list[str] = []
    for n in names:
        for t in factor_by_name(n).terms:
            if t.feature not in out:
                out.append(t.feature)
    return out


def _check() -> None:
    from technic.features.registry import FEATURE_NAMES
    known = set(FEATURE_NAMES)
    for f in FACTORS:
        for t in f.terms:
            if t.feature not in known:
                raise ValueError(f"factor {f.name}: unknown feature {t.feature!r}")
            if t.transform not in TRANSFORMS:
                raise ValueError(f"factor {f.name}: unknown transform {t.transform!r}")


_check()
