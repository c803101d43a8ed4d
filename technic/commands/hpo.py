"""`technic hpo`: walk-forward hyper-parameter search for one model (parsing only; see ``technic.hpo``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from ..errors import TechnicError


def _print_trial(trial, n_folds: int) -> None:
    what = "value" if trial.state.name == "COMPLETE" else "so far"  # a pruned trial: running mean at the cut
    value = "-" if trial.value is None else f"{trial.value:+.4f}"
    secs = trial.duration.total_seconds() if trial.duration else 0.0
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
    tag = " (defaults)" if trial.user_attrs.get("defaults") else ""
    print(f"trial {trial.number:3d} {trial.state.name.lower():8s} {what} {value} folds "
          f"{len(trial.intermediate_values)}/{n_folds} {secs:5.0f} s  {params}{tag}", flush=True)


def hpo(bars, fundamentals, securities, symbols, start, end, model, horizon, trials, minutes, out, study_name,
        test_days, min_train_days, holdout_days, max_train_rows, k_features, seed, std_penalty, prune_after,
        threads, cache_dir) -> None:
    import optuna

    from ..hpo import HPO_MODELS, run_hpo
    from ..labels import make_labels
    from ..research import BacktestConfig, cached_features
    from .research import _horizons, _inputs, _universe
    if model not in HPO_MODELS:
        raise TechnicError(f"--model: unknown model {model!r}; expected one of {', '.join(HPO_MODELS)}")
    if trials < 0 or minutes < 0:
        raise TechnicError(f"--trials and --minutes must be >= 0, got {trials} and {minutes}")
    h = _horizons([horizon])[0]
    cfg = BacktestConfig(horizons=(h,), models=(model,), test_days=test_days, min_train_days=min_train_days,
                         max_train_rows=max_train_rows, k_features=k_features, seed=seed, n_threads=threads)
    cfg.check()
    b, f, s = _inputs(bars, fundamentals, securities, start, end)
    feats = cached_features(b, f, s, None, cache_dir=cache_dir or Path(out) / "cache")
    universe = _universe(b, symbols, None, seed)
    if universe is not None:  # features over every symbol; the search trains and scores the drawn ones
        feats = feats[feats.index.get_level_values(1).isin(universe)]
    labels = make_labels(b, cfg.label_horizons, lag=cfg.lag)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is printed below
    doc = run_hpo(feats, labels, cfg, model, h, out, n_trials=trials or None, timeout_s=minutes * 60 or None,
                  holdout_days=holdout_days, study_name=study_name, std_penalty=std_penalty,
                  prune_after_folds=prune_after, on_trial=_print_trial)
    print(f"best trial {doc['best_trial']}: in-search RankIC {doc['best_value']:.4f}; holdout RankIC "
          f"{doc['holdout_rank_ic']:.4f} (defaults {doc['holdout_rank_ic_default']:.4f}); "
          f"{doc['n_trials']} trials, {doc['n_pruned']} pruned")
    print(f"wrote {Path(out) / 'best_params.json'}, trials.csv, hpo.md, study.db", file=sys.stderr)


def register(app: typer.Typer) -> None:
    @app.command("hpo")
    def hpo_cmd(
        bars: Path = typer.Option(..., help="bars file (csv, csv.gz or parquet)"),
        out: Path = typer.Option(..., help="output directory (study.db, best_params.json, trials.csv, hpo.md)"),
        model: str = typer.Option("lgbm", help="lgbm, xgb, lstm or transformer"),
        fundamentals: Optional[Path] = typer.Option(None, help="fundamentals file"),
        securities: Optional[Path] = typer.Option(None, help="securities file (sectors)"),
        symbols: Optional[int] = typer.Option(None, help="search on N symbols drawn at random (--seed)"),
        start: Optional[str] = typer.Option(None, help="first date (YYYY-MM-DD)"),
        end: Optional[str] = typer.Option(None, help="last date (YYYY-MM-DD)"),
        horizon: int = typer.Option(5, help="label horizon in bars"),
        trials: int = typer.Option(20, help="new trials in this run (0 = until --minutes)"),
        minutes: float = typer.Option(10.0, help="time budget, checked between trials (0 = none)"),
        study_name: Optional[str] = typer.Option(None, help="default technic-MODEL-hH; same name resumes"),
        test_days: int = typer.Option(63, help="walk-forward test block = retrain every N dates"),
        min_train_days: int = typer.Option(252, help="training dates before the first fold"),
        holdout_days: int = typer.Option(126, help="last dates kept out of the search, scored at the end"),
        max_train_rows: int = typer.Option(150_000, help="row subsample per training fold"),
        k_features: int = typer.Option(0, help="features kept by the selection ensemble (0 = all)"),
        seed: int = typer.Option(0, help="seed of the sampler and the models"),
        std_penalty: float = typer.Option(0.0, help="objective = mean fold RankIC - this x their std"),
        prune_after: int = typer.Option(2, "--prune-after", help="median pruning from this many folds on (0 = off)"),
        threads: int = typer.Option(2, help="threads for the models"),
        cache_dir: Optional[Path] = typer.Option(None, help="feature cache (default OUT/cache)"),
    ):
        """Optuna search of one model's parameters on walk-forward folds; the best and the default
        parameters are then scored on a holdout the search never saw."""
        hpo(bars, fundamentals, securities, symbols, start, end, model, horizon, trials, minutes, out, study_name,
            test_days, min_train_days, holdout_days, max_train_rows, k_features, seed, std_penalty, prune_after,
            threads, cache_dir)
