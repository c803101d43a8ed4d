"""`technic demo`: the one-command main job.

It starts the embedded broker, trains a quick model if the registry is empty,
runs the worker, replays the shipped data and shows live scores
(``stream.tools.demo``). ``--batch-only`` runs the batch research path instead and
prints a feature/label summary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def batch_summary(*, days, symbols: int, data: Path) -> None:
    """Batch path on the shipped data: features, labels, a per-category summary."""
    from rich.console import Console
    from rich.table import Table

    from ..evaluation.metrics import daily_ic, ic_summary
    from ..features import registry as R
    from ..features.batch import compute_features
    from ..labels import make_labels
    from ..paths import dev_files
    from .features import load_inputs

    files = dev_files(Path(data))
    con = Console()
    bars, fund, secs, _ = load_inputs(files["bars"], files.get("fundamentals"), files.get("securities"),
                                      None, symbols)
    if days:
        keep = np.sort(bars["date"].unique())[: days + 260]
        bars = bars[bars["date"].isin(keep)]
    con.print(f"[bold]Technic batch demo[/]: {bars['symbol'].nunique()} symbols, "
              f"{bars['date'].nunique()} dates, {len(bars):,} bars")
    feats = compute_features(bars, fund, secs)
    labels = make_labels(bars, (5, 10))
    cats = {f.name: f.category for f in R.ALL_FEATURES}
    t = Table(title="features by category (RankIC vs 5-day excess return, in-sample, descriptive only)")
    for col in ("category", "features", "NaN rate", "best |RankIC|", "feature"):
        t.add_column(col)
    lab = labels["excess_5"]
    for cat in R.CATEGORIES:
        names = [n for n in feats.columns if cats[n] == cat]
        nan_rate = float(feats[names].isna().to_numpy().mean())
        best, best_name = 0.0, "-"
        for n in names:
            if feats[n].notna().sum() < 1000:
                continue
            ic = ic_summary(daily_ic(feats[n], lab, method="spearman"))["mean"]
            if np.isfinite(ic) and abs(ic) > abs(best):
                best, best_name = ic, n
        t.add_row(cat, str(len(names)), f"{nan_rate:.1%}", f"{best:+.4f}", best_name)
    con.print(t)
    desc = labels[["fwd_ret_5", "excess_5", "fwd_ret_10"]].describe().T[["count", "mean", "std"]]
    con.print(pd.DataFrame(desc).to_string())
