"""``BacktestConfig``: the Ensemble's settings (``models.config.EnsembleConfig``) plus how it is
trained and judged (horizons, execution lag, walk-forward, costs, null model)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import TechnicError
from ..labels import DEFAULT_LAG
from ..models.config import EnsembleConfig

MIN_SYMBOLS = 10  # per date: fewer names make daily ranks, deciles and RankIC meaningless
DECAY_HORIZONS = (1, 5, 10, 20)


@dataclass
class BacktestConfig(EnsembleConfig):
    horizons: tuple = (5,)
    lag: int = DEFAULT_LAG                 # bars between a score's close and the trade (label start)
    target_mix: tuple = (1, 2, 4)          # training target = mean of per-date rank-gauss(excess at m*h)
    train_days: int | None = None          # None = expanding window
    min_train_days: int = 252
    test_days: int = 63                    # retrain every N trading days
    cost_bps: float = 10.0
    shap_rows: int = 2000
    seed: int = 0
    null: bool = True                      # the same ML pipeline on labels shuffled within each date
    regime: bool = False                   # append past-only market-regime columns (research only)
    sector_neutral: bool = False           # train on sector-neutral excess (needs sectors)

    def check(self) -> None:
        super().check()
        if not self.horizons or any(int(h) < 1 for h in self.horizons):
            raise TechnicError(f"horizons must be positive bar counts, got {list(self.horizons)}")
        if isinstance(self.lag, bool) or int(self.lag) != self.lag or self.lag < 0:
            raise TechnicError(f"lag must be a whole number of bars >= 0, got {self.lag!r}")
        if not self.target_mix or any(int(m) < 1 for m in self.target_mix):
            raise TechnicError(f"target_mix must be positive horizon multipliers, got {list(self.target_mix)}")
        if self.test_days < 1 or self.min_train_days < 20:
            raise TechnicError(f"need test_days >= 1 and min_train_days >= 20, got {self.test_days}, "
                               f"{self.min_train_days}")

    def target_horizons(self, h: int) -> tuple[int, ...]:
        """Label horizons whose targets are averaged into horizon ``h``'s training target."""
        return tuple(dict.fromkeys(int(m) * int(h) for m in self.target_mix))

    def purge(self, h: int) -> int:
        """Bars a training target of horizon ``h`` looks ahead (inner purge / validation gap)."""
        return max(self.target_horizons(h)) + int(self.lag)

    @property
    def purge_days(self) -> int:
        """Walk-forward purge: the longest look-ahead of any training target or evaluation label."""
        return max(self.purge(h) for h in self.horizons)

    @property
    def label_horizons(self) -> tuple[int, ...]:
        """Every label horizon needed: targets, evaluation and the IC-decay diagnostics."""
        hs = {g for h in self.horizons for g in self.target_horizons(h)} | set(map(int, self.horizons))
        return tuple(sorted(hs | set(DECAY_HORIZONS)))
