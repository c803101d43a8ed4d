"""`technic online-eval`: static vs static+online RankIC on a replay (see technic.online.evaluate)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command("online-eval")
    def online_eval_cmd(
        bars: Path = typer.Option(..., help="bars file (csv, csv.gz or parquet)"),
        fundamentals: Optional[Path] = typer.Option(None, help="fundamentals file"),
        securities: Optional[Path] = typer.Option(None, help="securities file (sectors)"),
        symbols: Optional[int] = typer.Option(None, help="keep only N symbols"),
        split_date: str = typer.Option("2016-01-01", help="train before, stream from this date"),
        registry: Optional[Path] = typer.Option(None, help="registry to train into (default: a temporary one)"),
        version: Optional[str] = typer.Option(None, help="score with this registry version instead of training"),
        horizon: list[int] = typer.Option([5, 10], help="horizons (repeatable)"),
        warmup: int = typer.Option(2000, help="labelled rows before the online score departs from the batch"),
        lr: float = typer.Option(0.005, help="SGD learning rate of the online learners"),
        out: Path = typer.Option(Path("online_eval.json"), help="output JSON"),
    ):
        """Train before --split-date, replay the rest in-process with the online layer, compare RankIC."""
        from ..online.evaluate import format_table, online_eval
        from ..online.layer import OnlineConfig
        from .features import load_inputs
        b, f, s, _ = load_inputs(bars, fundamentals, securities, None, symbols)
        cfg = OnlineConfig(horizons=tuple(horizon), warmup=warmup, lr=lr)

        def progress(i, n):
            if i % 20000 == 0:
                print(f"replay: {i}/{n} bars", file=sys.stderr, flush=True)
        doc = online_eval(b, f, s, split_date=split_date, registry=registry, version=version, config=cfg,
                          progress=progress)
        out.write_text(json.dumps(doc, indent=1, default=float))
        print(format_table(doc))
        print(f"wrote {out}", file=sys.stderr)
