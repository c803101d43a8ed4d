"""`technic compare-variants`: regime / sector-neutral variants vs base on the same walk-forward folds.

Parsing only: the work is done by ``technic.variants.compare_variants``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import TechnicError
from .research import _horizons, _inputs, _models, _progress, _universe


def compare(bars, fundamentals, securities, symbols, start, end, horizon, models, variants, out, cost_bps,
            test_days, min_train_days, k_features, max_train_rows, threads, cache_dir) -> dict:
    from ..research import BacktestConfig
    from ..variants import VARIANTS, compare_variants, parse_variants
    names = parse_variants(variants)
    needs = [v for v in names if VARIANTS[v][1]]
    if needs and securities is None:
        raise TechnicError(f"variant(s) {', '.join(needs)} train on sector-neutral targets and need sectors: "
                           "pass --securities FILE (or drop them from --variants)")
    cfg = BacktestConfig(horizons=_horizons(horizon), models=_models(models), test_days=test_days,
                         min_train_days=min_train_days, cost_bps=cost_bps, k_features=k_features,
                         max_train_rows=max_train_rows, n_threads=threads, blend=False, null=False)
    cfg.check()
    b, f, s = _inputs(bars, fundamentals, securities, start, end)
    doc = compare_variants(b, f, s, cfg, names, out_dir=out, cache_dir=cache_dir or Path(out) / "cache",
                           progress=_progress, universe=_universe(b, symbols, None, 0))
    print((Path(out) / "comparison.md").read_text())
    print(f"wrote {out}/comparison.json, comparison.md, comparison.html", file=sys.stderr)
    return doc


def register(app: typer.Typer) -> None:
    @app.command("compare-variants")
    def compare_variants_cmd(
        bars: Path = typer.Option(..., help="bars file (csv, csv.gz or parquet)"),
        out: Path = typer.Option(..., help="output directory (comparison.json/.md/.html)"),
        fundamentals: Optional[Path] = typer.Option(None, help="fundamentals file"),
        securities: Optional[Path] = typer.Option(None, help="securities file (sectors; needed by sector_neutral)"),
        symbols: Optional[int] = typer.Option(None, help="train and evaluate on N symbols drawn at random (seed 0)"),
        start: Optional[str] = typer.Option(None, help="first date (YYYY-MM-DD)"),
        end: Optional[str] = typer.Option(None, help="last date (YYYY-MM-DD)"),
        horizon: List[int] = typer.Option([5, 10], help="label horizon in bars (repeatable; first = primary)"),
        models: str = typer.Option("lgbm", help="comma-separated models (compared: the ML member: stack, else "
                                   "ensemble, else the one)"),
        variants: str = typer.Option("base,regime,sector_neutral,regime+sector_neutral",
                                     help="comma-separated variants (base is always included)"),
        cost_bps: float = typer.Option(10.0, help="cost per unit traded, bps"),
        test_days: int = typer.Option(126, help="test block length = retrain every N dates"),
        min_train_days: int = typer.Option(252, help="training dates before the first fold"),
        k_features: int = typer.Option(0, help="features kept by the selection ensemble (0 = all)"),
        max_train_rows: int = typer.Option(150_000, help="row subsample per training fold"),
        threads: int = typer.Option(2, help="threads for LightGBM/XGBoost"),
        cache_dir: Optional[Path] = typer.Option(None, help="feature cache (default OUT/cache)"),
    ):
        """Compare base vs regime / sector-neutral variants on the same folds; keep a variant only if the
        paired out-of-sample RankIC gain has Newey-West t >= 2 on the primary horizon and no other horizon is worse."""
        compare(bars, fundamentals, securities, symbols, start, end, horizon, models, variants, out, cost_bps,
                test_days, min_train_days, k_features, max_train_rows, threads, cache_dir)


__all__ = ["register"]
