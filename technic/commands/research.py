"""`technic backtest`, `technic train`, `technic registry list|show|promote|rollback`.

Parsing only: the work is done by ``technic.research``, ``technic.training`` and
``technic.registry``. User errors are ``TechnicError`` (printed without a traceback).
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import RegistryError, TechnicError
from .progress import progress_bar


def _models(spec: str) -> tuple[str, ...]:
    from ..research import ALL_MODEL_NAMES as MODEL_NAMES
    names = tuple(m.strip() for m in spec.split(",") if m.strip())
    bad = [m for m in names if m not in MODEL_NAMES]
    if not names or bad:
        raise TechnicError(f"--models: unknown model name(s) {bad or [spec]}; expected a comma-separated "
                           f"subset of {', '.join(MODEL_NAMES)}")
    return names


def _horizons(hs) -> tuple[int, ...]:
    hs = tuple(hs or (5,))
    if any(h < 1 or h > 63 for h in hs):
        raise TechnicError(f"--horizon must be between 1 and 63 bars, got {list(hs)}")
    return tuple(dict.fromkeys(hs))


def _registry_root(registry: Optional[Path]) -> Path:
    if registry is not None:
        return registry
    env = os.environ.get("TECHNIC_REGISTRY")
    if env:
        return Path(env)
    return Path("registry")


def _inputs(bars, fundamentals, securities, symbols, start, end):
    from .features import load_inputs
    if start and end and str(start) > str(end):
        raise TechnicError(f"empty date range: --start {start} is after --end {end}")
    b, f, s, a = load_inputs(bars, fundamentals, securities, None, symbols, start=start, end=end)
    return b, f, s


@contextmanager
def _progress(total: int, desc: str):
    """A tqdm bar on a terminal; otherwise one log line per step (so batch logs show progress)."""
    if sys.stderr.isatty():
        with progress_bar(total, desc) as tick:
            yield tick
        return
    t0, done = time.perf_counter(), [0]

    def tick(n: int = 1) -> None:
        done[0] += n
        print(f"{desc}: {done[0]}/{total} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    yield tick


PARAM_KEYS = ("model_params", "deep_params", "selector_params", "win_prob_params", "deep_preset", "stack_alpha",
              "stack_positive", "stack_folds", "n_estimators", "early_stopping_rounds")


def load_params(path: Optional[Path]) -> dict:
    """BacktestConfig overrides from a JSON file: only the ``PARAM_KEYS``. A ``technic hpo``
    best_params.json (it has ``study_name``) also carries its search report, which is skipped;
    any other file with an unknown key is refused (a typo must not be silently ignored)."""
    if path is None:
        return {}
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise TechnicError(f"--params {path}: cannot read JSON: {e}") from None
    if not isinstance(doc, dict):
        raise TechnicError(f"--params {path}: expected a JSON object")
    bad = [] if "study_name" in doc else [k for k in doc if k not in PARAM_KEYS]
    if bad:
        raise TechnicError(f"--params {path}: unknown key(s) {bad}; allowed: {', '.join(PARAM_KEYS)}")
    return {k: doc[k] for k in PARAM_KEYS if k in doc}


def make_config(horizon, models, params: Optional[Path] = None, deep_preset: Optional[str] = None,
                **kw):
    """BacktestConfig from CLI values: explicit flags override the --params file."""
    from ..models.deep import PRESETS
    from ..research import BacktestConfig
    over = load_params(params)
    if deep_preset is not None:
        over["deep_preset"] = deep_preset
    if over.get("deep_preset", "small") not in PRESETS:
        raise TechnicError(f"--deep-preset must be one of {', '.join(PRESETS)}, got {over['deep_preset']!r}")
    cfg = BacktestConfig(horizons=_horizons(horizon), models=_models(models), **{**over, **kw})
    cfg.check()
    return cfg


def backtest(bars, fundamentals, securities, symbols, start, end, horizon, models, out, cost_bps,
             train_days, test_days, min_train_days, k_features, max_train_rows, threads, cache_dir,
             params=None, deep_preset=None, regime=False, sector_neutral=False, stack_folds=None) -> None:
    from ..research import run_backtest
    cfg = make_config(horizon, models, params, deep_preset, train_days=train_days, test_days=test_days,
                      min_train_days=min_train_days, cost_bps=cost_bps, k_features=k_features,
                      max_train_rows=max_train_rows, n_threads=threads, regime=regime,
                      sector_neutral=sector_neutral, **({"stack_folds": stack_folds} if stack_folds else {}))
    if sector_neutral and securities is None:
        raise TechnicError("--sector-neutral needs --securities (the sector map)")
    b, f, s = _inputs(bars, fundamentals, securities, symbols, start, end)
    doc = run_backtest(b, f, s, None, out_dir=out, cfg=cfg, cache_dir=cache_dir or Path(out) / "cache",
                       progress_factory=_progress)
    print(_summary_table(doc))
    print(f"wrote {doc['_paths']['metrics']} and {doc['_paths']['report']}", file=sys.stderr)


def _summary_table(doc: dict) -> str:
    cols = ["rank_ic_mean", "rank_icir", "rank_ic_nw_tstat", "hit_rate", "top_decile_hit_rate",
            "sharpe_net", "long_only_ann_return", "n_days"]
    lines = []
    for h, hd in doc["horizons"].items():
        lines.append(f"horizon {h}: " + " ".join(f"{c:>20s}" for c in cols))
        for kind in ("models", "baselines"):
            for name, e in hd[kind].items():
                m = e.get("metrics") or {}
                vals = []
                for c in cols:
                    v = m.get(c)
                    vals.append(f"{v:20.4f}" if isinstance(v, float) else f"{str(v if v is not None else '-'):>20s}")
                lines.append(f"  {name:>14s}" + " ".join(vals))
    return "\n".join(lines)


def train(bars, fundamentals, securities, symbols, start, end, horizon, models, register_flag, registry,
          test_days, threads, cache_dir, bootstrap, params=None, deep_preset=None, sector_neutral=False) -> None:
    from ..training import train_and_register
    if not register_flag:
        raise TechnicError("technic train needs --register (training without registering has no output)")
    cfg = make_config(horizon, models, params, deep_preset, test_days=test_days, n_threads=threads,
                      sector_neutral=sector_neutral)
    b, f, s = _inputs(bars, fundamentals, securities, symbols, start, end)
    res = train_and_register(b, f, s, registry_root=_registry_root(registry), cfg=cfg, end=end,
                             promote_if_empty=bootstrap, cache_dir=cache_dir)
    m = res["metrics"]
    status = ("promoted" if res["gate"]["passed"] else "promoted by --bootstrap although the gate failed"
              ) if res["promoted"] else "rejected"
    print(f"registered {res['version']} ({status}): "
          f"rank_ic_mean {m.get('rank_ic_mean')}, nw t {m.get('rank_ic_nw_tstat')}")
    for r in res["gate"]["reasons"]:
        print(f"  gate: {r}")


def register(app: typer.Typer) -> None:
    """Add the research commands and the ``registry`` sub-app to the main CLI."""
    reg_app = typer.Typer(no_args_is_help=True, help="Model registry: list, show, promote, rollback.")
    app.add_typer(reg_app, name="registry")

    @app.command("backtest")
    def backtest_cmd(
        bars: Path = typer.Option(..., help="bars file (csv, csv.gz or parquet)"),
        out: Path = typer.Option(..., help="output directory (metrics.json, report.html)"),
        fundamentals: Optional[Path] = typer.Option(None, help="fundamentals file"),
        securities: Optional[Path] = typer.Option(None, help="securities file (sectors)"),
        symbols: Optional[int] = typer.Option(None, help="keep only N symbols"),
        start: Optional[str] = typer.Option(None, help="first date (YYYY-MM-DD)"),
        end: Optional[str] = typer.Option(None, help="last date (YYYY-MM-DD)"),
        horizon: List[int] = typer.Option([5], help="label horizon in bars (repeatable)"),
        models: str = typer.Option("lgbm,xgb", help="comma-separated subset of lgbm,xgb,lstm,transformer,stack"),
        cost_bps: float = typer.Option(10.0, help="cost per unit traded, bps"),
        train_days: Optional[int] = typer.Option(None, help="rolling train window in dates (default expanding)"),
        test_days: int = typer.Option(63, help="test block length = retrain every N dates"),
        min_train_days: int = typer.Option(252, help="training dates before the first fold"),
        k_features: int = typer.Option(40, help="features kept by the selection ensemble (0 = all)"),
        max_train_rows: int = typer.Option(150_000, help="row subsample per training fold"),
        threads: int = typer.Option(2, help="threads for LightGBM/XGBoost"),
        cache_dir: Optional[Path] = typer.Option(None, help="feature cache (default OUT/cache)"),
        params: Optional[Path] = typer.Option(None, help="JSON of config overrides, e.g. technic hpo's best_params.json"),
        deep_preset: Optional[str] = typer.Option(None, help="LSTM/Transformer sizes: small (CPU default) or seed"),
        regime: bool = typer.Option(False, help="append past-only market-regime features"),
        sector_neutral: bool = typer.Option(False, help="train on sector-neutral excess returns (needs --securities)"),
        stack_folds: Optional[int] = typer.Option(None, help="inner purged folds for the out-of-fold stack / "
                                                  "win-prob inputs (default 3)"),
    ):
        """Walk-forward backtest of the models against the baselines; writes metrics.json + report.html."""
        backtest(bars, fundamentals, securities, symbols, start, end, horizon, models, out, cost_bps,
                 train_days, test_days, min_train_days, k_features, max_train_rows, threads, cache_dir,
                 params, deep_preset, regime, sector_neutral, stack_folds)

    @app.command("train")
    def train_cmd(
        bars: Path = typer.Option(..., help="bars file"),
        fundamentals: Optional[Path] = typer.Option(None),
        securities: Optional[Path] = typer.Option(None),
        symbols: Optional[int] = typer.Option(None, help="keep only N symbols"),
        start: Optional[str] = typer.Option(None),
        end: Optional[str] = typer.Option(None, help="train on data up to this date"),
        horizon: List[int] = typer.Option([5, 10], help="label horizons (first = gated)"),
        models: str = typer.Option("lgbm,xgb", help="subset of lgbm,xgb,lstm,transformer,stack"),
        register_flag: bool = typer.Option(False, "--register", help="register (and gate) the model"),
        registry: Optional[Path] = typer.Option(None, help="registry dir (default $TECHNIC_REGISTRY or ./registry)"),
        test_days: int = typer.Option(126, help="walk-forward test block for the gate's metrics"),
        threads: int = typer.Option(2),
        cache_dir: Optional[Path] = typer.Option(None, help="feature cache directory"),
        bootstrap: bool = typer.Option(False, help="promote even if the gate fails when the registry is empty"),
        params: Optional[Path] = typer.Option(None, help="JSON of config overrides (technic hpo's best_params.json)"),
        deep_preset: Optional[str] = typer.Option(None, help="LSTM/Transformer sizes: small (CPU default) or seed"),
        sector_neutral: bool = typer.Option(False, help="train on sector-neutral excess returns"),
    ):
        """Train on all data up to --end, register it, and promote it if it passes the gate."""
        train(bars, fundamentals, securities, symbols, start, end, horizon, models, register_flag, registry,
              test_days, threads, cache_dir, bootstrap, params, deep_preset, sector_neutral)

    @reg_app.command("list")
    def reg_list(registry: Optional[Path] = typer.Option(None), as_json: bool = typer.Option(False, "--json")):
        """Every version: status, promoted, rank_ic_mean."""
        from ..registry import Registry
        rows = Registry(_registry_root(registry)).list()
        if as_json:
            print(json.dumps(rows, indent=1))
            return
        if not rows:
            print("registry is empty")
        for r in rows:
            print(f"{r['version']}  {r['status']:<11s} {'*' if r['promoted'] else ' '} "
                  f"rank_ic_mean={r.get('rank_ic_mean')}  {r['created_at']}")

    @reg_app.command("show")
    def reg_show(version: str, registry: Optional[Path] = typer.Option(None),
                 full: bool = typer.Option(False, "--full", help="include reference distributions and folds")):
        """The manifest of a version."""
        from ..registry import Registry
        doc = Registry(_registry_root(registry)).show(version)
        if not full:
            doc = {k: v for k, v in doc.items() if k not in ("reference_distributions", "fold_metrics")}
        print(json.dumps(doc, indent=1, default=str))

    @reg_app.command("promote")
    def reg_promote(version: str, registry: Optional[Path] = typer.Option(None),
                    reason: str = typer.Option("manual promotion", help="kept in the history"),
                    force: bool = typer.Option(False, help="promote a rejected version anyway")):
        """Serve a version (a rejected one needs --force)."""
        from ..registry import Registry
        Registry(_registry_root(registry)).promote(version, reason=reason, force=force)
        print(f"promoted {version}")

    @reg_app.command("rollback")
    def reg_rollback(registry: Optional[Path] = typer.Option(None),
                     to: Optional[str] = typer.Option(None, help="version to serve (default: previous)")):
        """Serve an earlier version again."""
        from ..registry import Registry
        v = Registry(_registry_root(registry)).rollback(to)
        print(f"rolled back to {v}")


__all__ = ["register", "RegistryError"]
