"""`technic backtest`, `technic evaluate`, `technic train`, `technic registry list|show|promote|rollback`.

Parsing only: the work is done by ``technic.research``, ``technic.evaluation.predictions``,
``technic.training`` and ``technic.registry``. User errors are ``TechnicError`` (one line, exit 2).
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
from .features import PRICE_BASIS_HELP, SPLITS_HELP
from .progress import progress_bar


def _models(spec: str) -> tuple[str, ...]:
    from ..models.config import ALL_MODEL_NAMES
    names = tuple(m.strip() for m in spec.split(",") if m.strip())
    bad = [m for m in names if m not in ALL_MODEL_NAMES]
    if not names or bad:
        raise TechnicError(f"--models: unknown model name(s) {bad or [spec]}; expected a comma-separated "
                           f"subset of {', '.join(ALL_MODEL_NAMES)}")
    return names


def _ints(spec: str, option: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in spec.split(",") if x.strip())
    except ValueError:
        raise TechnicError(f"{option}: expected comma-separated whole numbers, got {spec!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise TechnicError(f"{option}: expected positive whole numbers, got {spec!r}")
    return vals


def _horizons(hs) -> tuple[int, ...]:
    hs = tuple(hs or (5,))
    if any(h < 1 or h > 63 for h in hs):
        raise TechnicError(f"--horizon must be between 1 and 63 bars, got {list(hs)}")
    return tuple(dict.fromkeys(hs))


def _registry_root(registry: Optional[Path]) -> Path:
    if registry is not None:
        return registry
    env = os.environ.get("TECHNIC_REGISTRY")
    return Path(env) if env else Path("registry")


def _inputs(bars, fundamentals, securities, start, end, splits=None, price_basis: str = "adjusted"):
    """Every symbol of the files (features and per-date transforms use the whole cross-section);
    fundamentals split-consistent with the bars (``splits`` file, else detected splits)."""
    from .features import load_inputs
    if start and end and str(start) > str(end):
        raise TechnicError(f"empty date range: --start {start} is after --end {end}")
    b, f, s, _ = load_inputs(bars, fundamentals, securities, None, None, start=start, end=end, splits=splits,
                             price_basis=price_basis)
    return b, f, s


def _universe(bars, symbols: Optional[int], half: Optional[int], seed: int):
    """The evaluated/trained symbols: all, a seeded random draw of --symbols N, or --half 1|2."""
    from ..research import draw_symbols
    if symbols is not None and symbols < 1:
        raise TechnicError(f"--symbols must be >= 1, got {symbols}")
    if half is not None and half not in (1, 2):
        raise TechnicError(f"--half must be 1 or 2, got {half}")
    if symbols is None and half is None:
        return None
    return draw_symbols(bars["symbol"], symbols, seed, half)


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


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


PARAM_KEYS = ("model_params", "deep_params", "selector_params", "win_prob_params", "deep_preset", "stack_alpha",
              "stack_positive", "stack_folds", "n_estimators", "early_stopping_rounds", "stop_metric", "min_trees",
              "n_seeds", "k_features", "blend_max", "target_mix", "factors")


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
    out = {k: doc[k] for k in PARAM_KEYS if k in doc}
    for k in ("target_mix", "factors"):
        if k in out and out[k] is not None:
            out[k] = tuple(out[k])
    return out


def make_config(horizon, models, params: Optional[Path] = None, deep_preset: Optional[str] = None, **kw):
    """BacktestConfig from CLI values: explicit flags (not None) override the --params file."""
    from ..models.deep import PRESETS
    from ..research import BacktestConfig
    over = load_params(params)
    if deep_preset is not None:
        over["deep_preset"] = deep_preset
    if over.get("deep_preset", "small") not in PRESETS:
        raise TechnicError(f"--deep-preset must be one of {', '.join(PRESETS)}, got {over['deep_preset']!r}")
    kw = {k: v for k, v in kw.items() if v is not None}
    cfg = BacktestConfig(horizons=_horizons(horizon), models=_models(models), **{**over, **kw})
    try:
        cfg.check()
    except TechnicError as e:
        raise TechnicError(_flag_names(str(e))) from None
    return cfg


def _flag_names(msg: str) -> str:
    """Config field names in a message -> the CLI flags that set them."""
    for field, flag in (("stack_folds", "--stack-folds"), ("n_seeds", "--n-seeds"), ("n_estimators", "--n-estimators"),
                        ("stop_metric", "--stop-metric"), ("target_mix", "--target-mix"), ("test_days", "--test-days"),
                        ("min_train_days", "--min-train-days"), ("lag", "--lag"), ("blend_max", "blend_max (--params)")):
        msg = msg.replace(field, flag)
    return msg


def _model_options(lag, target_mix, blend, null, n_seeds, stop_metric, n_estimators, k_features, factor_neutral):
    return dict(lag=lag, target_mix=_ints(target_mix, "--target-mix") if target_mix else None, blend=blend,
                null=null, n_seeds=n_seeds, stop_metric=stop_metric, n_estimators=n_estimators,
                k_features=k_features, factor_sector_neutral=factor_neutral)


def backtest(bars, fundamentals, securities, symbols, half, seed, start, end, horizon, models, out, cost_bps,
             train_days, test_days, min_train_days, max_train_rows, threads, cache_dir, params, deep_preset, regime,
             sector_neutral, stack_folds, lockbox, splits=None, price_basis="adjusted", **model_opts) -> None:
    from ..research import run_backtest
    cfg = make_config(horizon, models, params, deep_preset, train_days=train_days, test_days=test_days,
                      min_train_days=min_train_days, cost_bps=cost_bps, max_train_rows=max_train_rows,
                      n_threads=threads, regime=regime, sector_neutral=sector_neutral, stack_folds=stack_folds,
                      seed=seed, **_model_options(**model_opts))
    if sector_neutral and securities is None:
        raise TechnicError("--sector-neutral needs --securities (the sector map)")
    b, f, s = _inputs(bars, fundamentals, securities, start, end, splits, price_basis)
    _universe(b, symbols, half, seed)  # checks --symbols / --half before the long run
    doc = run_backtest(b, f, s, None, out_dir=out, cfg=cfg, symbols=symbols, half=half, universe_seed=seed,
                       cache_dir=cache_dir or Path(out) / "cache", progress_factory=_progress, lockbox=lockbox)
    print(_summary_table(doc))
    print(f"wrote {doc['_predictions']}, {doc['_paths']['metrics']} and {doc['_paths']['report']}", file=sys.stderr)


def evaluate(predictions: Path, out: Path, start, end, lockbox) -> None:
    from ..evaluation.predictions import report
    doc = report(predictions, out, start, end, lockbox)
    print(_summary_table(doc))
    print(f"wrote {doc['_paths']['metrics']} and {doc['_paths']['report']}", file=sys.stderr)


def _summary_table(doc: dict) -> str:
    cols = ["rank_ic_mean", "rank_icir", "rank_ic_nw_tstat", "hit_rate", "top_decile_hit_rate",
            "sharpe_net", "long_only_ann_return", "n_days"]
    served = (doc.get("meta") or {}).get("served")
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
                tag = "*" if name == served else " "
                lines.append(f" {tag}{name:>17s}" + " ".join(vals))
        c = (doc.get("comparison") or {}).get(h) or {}
        if c.get("best_baseline"):
            lines.append(f"  served {served} vs best baseline {c['best_baseline']}: {c['vs_best_mean_diff']:+.4f} "
                         f"(NW t {c['vs_best_nw_tstat']:.2f}); null RankIC {c.get('null_rank_ic')}")
    return "\n".join(lines)


def train(bars, fundamentals, securities, symbols, seed, start, end, horizon, models, register_flag, registry,
          test_days, threads, cache_dir, force_promote, params=None, deep_preset=None, sector_neutral=False,
          splits=None, price_basis="adjusted", **model_opts) -> None:
    from ..training import train_and_register
    if not register_flag:
        raise TechnicError("technic train needs --register (training without registering has no output)")
    cfg = make_config(horizon, models, params, deep_preset, test_days=test_days, n_threads=threads,
                      sector_neutral=sector_neutral, seed=seed, **_model_options(**model_opts))
    b, f, s = _inputs(bars, fundamentals, securities, start, end, splits, price_basis)
    universe = _universe(b, symbols, None, seed)
    root = _registry_root(registry)
    res = train_and_register(b, f, s, registry_root=root, cfg=cfg, end=end, force_promote=force_promote,
                             cache_dir=cache_dir, universe=universe, progress_factory=_progress, log=_say)
    m = res["metrics"]
    print(f"registered {res['version']} ({res['status']}): served {res['served']}, "
          f"rank_ic_mean {m.get('rank_ic_mean'):.4f}, NW t {m.get('rank_ic_nw_tstat'):.2f}")
    for r in res["gate"]["reasons"]:
        print(f"  gate: {r}")
    if not res["promoted"]:
        print(f"  next: the gate keeps the promoted model serving. Inspect the evidence with `technic backtest` "
              f"(same options, --out DIR: report.html and predictions.parquet); to serve {res['version']} anyway: "
              f"`technic registry promote {res['version']} --force --registry {root} --reason \"...\"`, or rerun "
              f"`technic train` with --force-promote.")


def register(app: typer.Typer) -> None:
    """Add the research commands and the ``registry`` sub-app to the main CLI."""
    reg_app = typer.Typer(no_args_is_help=True, help="Model registry: list, show, promote, rollback.")
    app.add_typer(reg_app, name="registry")

    def model_opts(lag, target_mix, blend, null, n_seeds, stop_metric, n_estimators, k_features, factor_neutral):
        return dict(lag=lag, target_mix=target_mix, blend=blend, null=null, n_seeds=n_seeds,
                    stop_metric=stop_metric, n_estimators=n_estimators, k_features=k_features,
                    factor_neutral=factor_neutral)

    @app.command("backtest")
    def backtest_cmd(
        bars: Path = typer.Option(..., help="bars file (csv, csv.gz or parquet)"),
        out: Path = typer.Option(..., help="output directory (predictions.parquet, metrics.json, report.html)"),
        fundamentals: Optional[Path] = typer.Option(None, help="fundamentals file"),
        securities: Optional[Path] = typer.Option(None, help="securities file (sectors)"),
        symbols: Optional[int] = typer.Option(None, help="train and evaluate on N symbols drawn at random (--seed); "
                                              "features always use every symbol"),
        half: Optional[int] = typer.Option(None, help="train and evaluate on half 1 or 2 of a --seed-ed random split"),
        seed: int = typer.Option(0, help="seed of the symbol draw and the models"),
        start: Optional[str] = typer.Option(None, help="first date (YYYY-MM-DD)"),
        end: Optional[str] = typer.Option(None, help="last date (YYYY-MM-DD)"),
        horizon: List[int] = typer.Option([5], help="label horizon in bars (repeatable)"),
        lag: int = typer.Option(1, help="execution lag in bars: labels run from close t+lag to close t+lag+h"),
        models: str = typer.Option("lgbm", help="comma-separated subset of lgbm,xgb,ridge,lstm,transformer,stack"),
        blend: bool = typer.Option(True, "--blend/--no-blend", help="serve the factor composite + a learned ML tilt"),
        null: bool = typer.Option(True, "--null/--no-null", help="also run the null model (shuffled labels)"),
        target_mix: Optional[str] = typer.Option(None, help="training target = mean over these multiples of h "
                                                 "(default 1,2,4)"),
        n_seeds: Optional[int] = typer.Option(None, help="seed bagging of the tree models"),
        stop_metric: Optional[str] = typer.Option(None, help="tree model size: none (fixed), l2 or rank_ic"),
        n_estimators: Optional[int] = typer.Option(None, help="trees per tree model"),
        k_features: Optional[int] = typer.Option(None, help="features kept by the selection ensemble (0 = all)"),
        factor_neutral: Optional[bool] = typer.Option(None, "--factor-neutral/--no-factor-neutral",
                                                      help="neutralize factor scores within GICS sectors"),
        cost_bps: float = typer.Option(10.0, help="cost per unit traded, bps"),
        train_days: Optional[int] = typer.Option(None, help="rolling train window in dates (default expanding)"),
        test_days: int = typer.Option(63, help="test block length = retrain every N dates"),
        min_train_days: int = typer.Option(252, help="training dates before the first fold"),
        max_train_rows: int = typer.Option(150_000, help="row subsample per training fold"),
        threads: int = typer.Option(2, help="threads for the models"),
        cache_dir: Optional[Path] = typer.Option(None, help="feature cache (default OUT/cache)"),
        params: Optional[Path] = typer.Option(None, help="JSON of config overrides, e.g. technic hpo's best_params.json"),
        deep_preset: Optional[str] = typer.Option(None, help="LSTM/Transformer sizes: small (CPU default) or seed"),
        regime: bool = typer.Option(False, help="append past-only market-regime features"),
        sector_neutral: bool = typer.Option(False, help="train on sector-neutral excess returns (needs --securities)"),
        stack_folds: Optional[int] = typer.Option(None, help="inner purged folds for out-of-fold predictions (default 3)"),
        lockbox: Optional[str] = typer.Option(None, help="also report before / from this date (YYYY-MM-DD)"),
        splits: Optional[Path] = typer.Option(None, help=SPLITS_HELP),
        price_basis: str = typer.Option("adjusted", help=PRICE_BASIS_HELP),
    ):
        """Walk-forward backtest against the baselines and the null model; writes predictions.parquet,
        metrics.json and report.html."""
        backtest(bars, fundamentals, securities, symbols, half, seed, start, end, horizon, models, out, cost_bps,
                 train_days, test_days, min_train_days, max_train_rows, threads, cache_dir, params, deep_preset,
                 regime, sector_neutral, stack_folds, lockbox, splits, price_basis,
                 **model_opts(lag, target_mix, blend, null, n_seeds, stop_metric, n_estimators, k_features,
                              factor_neutral))

    @app.command("evaluate")
    def evaluate_cmd(
        predictions: Path = typer.Option(..., help="a backtest's predictions.parquet"),
        out: Path = typer.Option(..., help="output directory (metrics.json, report.html)"),
        start: Optional[str] = typer.Option(None, help="first date evaluated (YYYY-MM-DD)"),
        end: Optional[str] = typer.Option(None, help="last date evaluated (YYYY-MM-DD)"),
        lockbox: Optional[str] = typer.Option(None, help="also report before / from this date (YYYY-MM-DD)"),
    ):
        """Recompute metrics.json and report.html from a predictions.parquet."""
        evaluate(predictions, out, start, end, lockbox)

    @app.command("train")
    def train_cmd(
        bars: Path = typer.Option(..., help="bars file"),
        fundamentals: Optional[Path] = typer.Option(None),
        securities: Optional[Path] = typer.Option(None),
        symbols: Optional[int] = typer.Option(None, help="train on N symbols drawn at random (--seed)"),
        seed: int = typer.Option(0, help="seed of the symbol draw and the models"),
        start: Optional[str] = typer.Option(None),
        end: Optional[str] = typer.Option(None, help="train on data up to this date"),
        horizon: List[int] = typer.Option([5, 10], help="label horizons (first = gated)"),
        lag: int = typer.Option(1, help="execution lag in bars"),
        models: str = typer.Option("lgbm", help="subset of lgbm,xgb,ridge,lstm,transformer,stack"),
        blend: bool = typer.Option(True, "--blend/--no-blend", help="serve the factor composite + a learned ML tilt"),
        null: bool = typer.Option(True, "--null/--no-null", help="also run the null model in the gate's backtest"),
        target_mix: Optional[str] = typer.Option(None, help="training target = mean over these multiples of h"),
        n_seeds: Optional[int] = typer.Option(None, help="seed bagging of the tree models"),
        stop_metric: Optional[str] = typer.Option(None, help="tree model size: none (fixed), l2 or rank_ic"),
        n_estimators: Optional[int] = typer.Option(None, help="trees per tree model"),
        k_features: Optional[int] = typer.Option(None, help="features kept by the selection ensemble (0 = all)"),
        factor_neutral: Optional[bool] = typer.Option(None, "--factor-neutral/--no-factor-neutral",
                                                      help="neutralize factor scores within GICS sectors"),
        register_flag: bool = typer.Option(False, "--register", help="register (and gate) the model"),
        registry: Optional[Path] = typer.Option(None, help="registry dir (default $TECHNIC_REGISTRY or ./registry)"),
        test_days: int = typer.Option(126, help="walk-forward test block for the gate's metrics"),
        threads: int = typer.Option(2),
        cache_dir: Optional[Path] = typer.Option(None, help="feature cache directory"),
        force_promote: bool = typer.Option(False, "--force-promote",
                                           help="promote even if the gate fails (recorded in the manifest)"),
        params: Optional[Path] = typer.Option(None, help="JSON of config overrides (technic hpo's best_params.json)"),
        deep_preset: Optional[str] = typer.Option(None, help="LSTM/Transformer sizes: small (CPU default) or seed"),
        sector_neutral: bool = typer.Option(False, help="train on sector-neutral excess returns"),
        splits: Optional[Path] = typer.Option(None, help=SPLITS_HELP),
        price_basis: str = typer.Option("adjusted", help=PRICE_BASIS_HELP),
    ):
        """Train on all data up to --end, register it, and promote it if it passes the gate."""
        train(bars, fundamentals, securities, symbols, seed, start, end, horizon, models, register_flag, registry,
              test_days, threads, cache_dir, force_promote, params, deep_preset, sector_neutral, splits, price_basis,
              **model_opts(lag, target_mix, blend, null, n_seeds, stop_metric, n_estimators, k_features,
                           factor_neutral))

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
