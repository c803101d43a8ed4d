"""Walk-forward research: configuration, data, training targets, the walk-forward and the backtest.

``BacktestConfig`` (``config``) -> ``walk_forward`` (``walkforward``: one ``models.Ensemble`` per
fold and horizon, and the null model) -> ``run_backtest`` (``backtest``: ``predictions.parquet`` and
the report recomputed from it by ``evaluation.predictions``).
"""

from ..models.config import ALL_MODEL_NAMES, BASE_NAMES
from .backtest import PREDICTIONS, build_predictions, run_backtest
from .config import DECAY_HORIZONS, MIN_SYMBOLS, BacktestConfig
from .data import cached_features, data_hash, draw_symbols, group_codes
from .targets import shuffle_within_dates, training_targets
from .walkforward import make_split, null_config, walk_forward

__all__ = ["ALL_MODEL_NAMES", "BASE_NAMES", "BacktestConfig", "DECAY_HORIZONS", "MIN_SYMBOLS", "PREDICTIONS",
           "build_predictions", "cached_features", "data_hash", "draw_symbols", "group_codes", "make_split",
           "null_config", "run_backtest", "shuffle_within_dates", "training_targets", "walk_forward"]
