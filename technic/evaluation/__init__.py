"""Out-of-sample evaluation: signal metrics, long-short portfolio, tear sheet.

``metrics`` (IC, RankIC, Newey-West t-stats, hit rates, quantiles, summarize,
breakdown), ``portfolio`` (staggered top-minus-bottom books, costs, Sharpe,
drawdown), ``ties`` (the (date, symbol)-hash tie-break of every per-date order,
tie share), ``panel`` ((date, symbol) index conventions), ``diagnostics``
(monthly IC, per-quantile and spread curves, rank autocorrelation, IC decay,
partial years), ``signal_stats`` (each series a report needs, computed once),
``figures`` (matplotlib, base64 PNG) and ``tearsheet`` (metrics.json +
self-contained report.html).
``write_tearsheet`` is imported lazily so that metrics do not pull in matplotlib.
"""

from .metrics import (breakdown, daily_ic, hit_rate, ic_summary, newey_west_se,  # noqa: F401
                      quantile_returns, summarize, top_decile_hit_rate)
from .ties import tie_share  # noqa: F401
from .portfolio import (annualized_return, long_short_books, long_short_returns,  # noqa: F401
                        long_short_summary, max_drawdown, sharpe)


def __getattr__(name):
    if name == "write_tearsheet":
        from .tearsheet import write_tearsheet
        return write_tearsheet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
