"""What an :class:`~technic.models.ensemble.Ensemble` is made of: one dataclass, shared by the
backtest, ``technic train`` and the registry (``research.BacktestConfig`` extends it with the
evaluation settings).

Served model (``served``): ``blend`` (default) = the factor composite plus a tilt toward the ML
score whose size is learned out of fold (``models.blend``); else ``stack`` when configured, else
``ensemble`` (the equal-weight mean of several base models), else the single base model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from technic.errors import TechnicError

from .deep import DEEP_NAMES

TREE_NAMES = ("lgbm", "xgb")
LINEAR_NAMES = ("ridge",)
BASE_NAMES = (*TREE_NAMES, *LINEAR_NAMES, *DEEP_NAMES)
META_MODELS = ("stack",)  # combine the base models (out-of-fold Ridge, ``models.stacking``)
ALL_MODEL_NAMES = (*BASE_NAMES, *META_MODELS)
STOP_METRICS = ("none", "l2", "rank_ic")


@dataclass
class EnsembleConfig:
    models: tuple = ("lgbm",)
    blend: bool = True                     # serve composite + learned tilt toward the ML score
    blend_max: float = 1.0                 # largest ML tilt (the composite's weight is 1)
    factors: tuple | None = None           # factor names of the composite (None = the whole library)
    factor_sector_neutral: bool = False    # neutralize factor scores within GICS sectors
    k_features: int = 0                    # 0 = no selection (all usable features)
    max_train_rows: int = 150_000          # row subsample of each training fold (speed)
    n_estimators: int = 300
    early_stopping_rounds: int = 0         # > 0 with stop_metric l2: classic early stopping
    stop_metric: str = "none"              # none (fixed size) | l2 | rank_ic (best checkpoint >= min_trees)
    min_trees: int = 50
    n_seeds: int = 1                       # seed bagging of the tree models
    model_params: dict = field(default_factory=dict)  # {"lgbm": {...}, "xgb": {...}, "ridge": {...}}
    selector_params: dict = field(default_factory=dict)  # FeatureSelector overrides (sample_rows, ...)
    stack_folds: int = 3                   # inner purged K-fold for out-of-fold predictions
    stack_alpha: float = 1.0
    stack_positive: bool = True
    win_prob: bool | None = None           # meta-model P(win); None = on when 'stack' is requested
    win_prob_params: dict = field(default_factory=dict)
    deep_preset: str = "small"
    deep_params: dict = field(default_factory=dict)
    embargo_days: int = 5
    n_threads: int = 2

    @property
    def base_models(self) -> tuple:
        return tuple(m for m in self.models if m not in META_MODELS)

    @property
    def use_win_prob(self) -> bool:
        return ("stack" in self.models) if self.win_prob is None else bool(self.win_prob)

    @property
    def ml_name(self) -> str:
        """The ML member: 'stack', else 'ensemble' (several base models), else the base model."""
        if "stack" in self.models:
            return "stack"
        return "ensemble" if len(self.base_models) > 1 else self.base_models[0]

    @property
    def served(self) -> str:
        return "blend" if self.blend else self.ml_name

    @property
    def needs_oof(self) -> bool:
        return "stack" in self.models or self.use_win_prob or self.blend

    def check(self) -> None:
        bad = [m for m in self.models if m not in ALL_MODEL_NAMES]
        if bad or not self.models or not self.base_models:
            raise TechnicError(f"unknown model name(s) {bad or list(self.models)}; expected a comma-separated "
                               f"subset of {', '.join(ALL_MODEL_NAMES)} with at least one base model")
        if self.needs_oof and self.stack_folds < 2:
            raise TechnicError(f"stack_folds must be >= 2, got {self.stack_folds}")
        if self.stop_metric not in STOP_METRICS:
            raise TechnicError(f"stop_metric must be one of {', '.join(STOP_METRICS)}, got {self.stop_metric!r}")
        if self.n_seeds < 1 or self.n_estimators < 1:
            raise TechnicError(f"need n_seeds >= 1 and n_estimators >= 1, got {self.n_seeds}, {self.n_estimators}")
        if self.blend and not 0 <= self.blend_max:
            raise TechnicError(f"blend_max must be >= 0, got {self.blend_max}")
        if self.factors is not None:
            from technic.factors import FACTOR_NAMES
            unknown = [f for f in self.factors if f not in FACTOR_NAMES]
            if unknown or not self.factors:
                raise TechnicError(f"unknown factor(s) {unknown or list(self.factors)}; expected a subset of "
                                   f"{', '.join(FACTOR_NAMES)}")

    @property
    def factor_names(self) -> tuple:
        from technic.factors import FACTOR_NAMES
        return tuple(self.factors) if self.factors is not None else FACTOR_NAMES
