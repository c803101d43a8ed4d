"""`technic retrain`: walk-forward training on the latest data, promotion gate, register/promote.

The answer to a ``retrain_requested`` alert: ``technic.training.train_and_register`` backtests the
configuration walk-forward (purge + embargo), fits the final models on every labelled row up to
``--end`` (default: the last bar), registers the version and promotes it only if it passes the gate
(beats 12-1 momentum, 5-day reversal and the incumbent, Newey-West t >= 2); workers hot-reload a promoted version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("retrain")
    def retrain_cmd(
        bars: Path = typer.Option(..., help="bars file (the latest data)"),
        registry: Path = typer.Option(..., help="registry directory"),
        fundamentals: Optional[Path] = typer.Option(None),
        securities: Optional[Path] = typer.Option(None),
        symbols: Optional[int] = typer.Option(None, help="train on N symbols drawn at random (seed 0)"),
        start: Optional[str] = typer.Option(None, help="first date used"),
        end: Optional[str] = typer.Option(None, help="last date used (default: the last bar)"),
        horizon: List[int] = typer.Option([5, 10], help="label horizons (first = gated)"),
        models: str = typer.Option("lgbm", help="comma-separated subset of lgbm,xgb,ridge,lstm,transformer,stack"),
        test_days: int = typer.Option(126, help="walk-forward test block for the gate's metrics"),
        threads: int = typer.Option(2),
        quick: bool = typer.Option(False, "--quick", help="the small demo configuration (LightGBM, few trees)"),
        as_json: bool = typer.Option(False, "--json", help="print the full decision as JSON"),
    ):
        """Retrain walk-forward on the latest data, gate, register and promote if it passes."""
        from ..research import BacktestConfig
        from ..training import train_and_register
        from .research import _horizons, _inputs, _models, _universe
        b, f, s = _inputs(bars, fundamentals, securities, start, end)
        universe = _universe(b, symbols, None, 0)
        if quick:
            from ..training import quick_config
            cfg = quick_config(b, _horizons(horizon), threads)
        else:
            cfg = BacktestConfig(horizons=_horizons(horizon), models=_models(models), test_days=test_days,
                                 n_threads=threads)
        res = train_and_register(b, f, s, registry_root=registry, cfg=cfg, end=end, universe=universe)
        if as_json:
            print(json.dumps({k: v for k, v in res.items() if k != "feature_names"}, indent=1, default=str))
            return
        m = res["metrics"]
        print(f"retrained {res['version']}: {'PROMOTED' if res['promoted'] else 'NOT promoted (gate failed)'}; "
              f"rank_ic_mean {m.get('rank_ic_mean')}, nw t {m.get('rank_ic_nw_tstat')}, {res['wall_s']:.0f} s")
        for r in res["gate"]["reasons"]:
            print(f"  gate: {r}")
