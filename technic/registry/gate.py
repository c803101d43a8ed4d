"""Promotion gate: a candidate is promoted only if it beats the baselines, the incumbent and noise.

The daily cross-sectional signal is weak (12-1 momentum RankIC ~0.016), so a model that does
not beat the simple baselines on the same walk-forward folds adds nothing, and a mean IC whose
Newey-West t-stat is below ~2 is indistinguishable from luck. The gate checks, on out-of-sample
metrics computed elsewhere (``technic.evaluation``):

1. candidate metric > every baseline's metric + margin;
2. candidate metric > incumbent's metric + margin (when a model is already promoted);
3. candidate t-stat >= ``min_tstat`` (Newey-West key, falling back to the plain t-stat key).

Every check writes a reason with its numbers, pass or fail, so a decision can be audited from
the manifest alone. Missing or non-finite numbers fail the gate: no number, no promotion.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from technic.errors import RegistryError

if TYPE_CHECKING:  # pragma: no cover
    from technic.registry.store import Registry

FALLBACK_TSTAT_KEY = "rank_ic_tstat"


@dataclass(frozen=True)
class GateConfig:
    """Thresholds of the promotion gate (see module docstring)."""

    margin: float = 0.0
    min_tstat: float = 2.0
    metric: str = "rank_ic_mean"
    tstat_key: str = "rank_ic_nw_tstat"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GateDecision:
    """Outcome of :func:`evaluate_gate`: ``passed`` and one spelled-out reason per check."""

    passed: bool
    reasons: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        head = "PASSED" if self.passed else "FAILED"
        return f"gate {head}: " + "; ".join(self.reasons)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "reasons": list(self.reasons)}


def _num(metrics: Mapping[str, Any] | None, key: str) -> float | None:
    """A finite float from ``metrics[key]``, else None (missing, null, NaN, inf, not a number)."""
    if not metrics:
        return None
    v = metrics.get(key)
    if isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _baselines(baseline_metrics: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """Accept one flat metrics dict (optionally with a "name") or a {name: metrics} mapping."""
    if not baseline_metrics:
        return {}
    if all(isinstance(v, Mapping) for v in baseline_metrics.values()):
        return dict(baseline_metrics)
    return {str(baseline_metrics.get("name", "baseline")): baseline_metrics}


def _compare(
    metric: str, cand: float, other_name: str, other: float | None, margin: float
) -> tuple[bool, str]:
    if other is None:
        return False, f"{other_name} has no finite {metric}; cannot compare"
    ok = cand > other + margin
    op = ">" if ok else "<="
    return ok, f"{metric} {cand:.3f} {op} {other_name} {other:.3f} + margin {margin:.3f}"


def evaluate_gate(
    candidate_metrics: Mapping[str, Any],
    baseline_metrics: Mapping[str, Any],
    incumbent_metrics: Mapping[str, Any] | None,
    cfg: GateConfig | None = None,
    incumbent_name: str = "incumbent",
) -> GateDecision:
    """Decide whether a candidate may be promoted; see the module docstring for the rules.

    ``baseline_metrics`` is either one metrics dict or ``{"momentum": {...}, "reversal": {...}}``;
    the candidate must beat each baseline. ``incumbent_metrics`` is None when nothing is promoted.
    """
    cfg = cfg or GateConfig()
    m = cfg.metric
    reasons: list[str] = []
    passed = True

    cand = _num(candidate_metrics, m)
    if cand is None:
        return GateDecision(False, [f"candidate has no finite {m}"])

    bases = _baselines(baseline_metrics)
    if not bases:
        passed = False
        reasons.append(f"no baseline metrics given; a candidate must beat a baseline on {m}")
    for name, metrics in bases.items():
        ok, why = _compare(m, cand, name, _num(metrics, m), cfg.margin)
        passed &= ok
        reasons.append(why)

    if incumbent_metrics is None:
        reasons.append("no incumbent: first promotion")
    else:
        ok, why = _compare(m, cand, incumbent_name, _num(incumbent_metrics, m), cfg.margin)
        passed &= ok
        reasons.append(why)

    key = cfg.tstat_key
    t = _num(candidate_metrics, key)
    if t is None and key != FALLBACK_TSTAT_KEY:
        key, t = FALLBACK_TSTAT_KEY, _num(candidate_metrics, FALLBACK_TSTAT_KEY)
    if t is None:
        passed = False
        reasons.append(f"candidate has no finite {cfg.tstat_key} (nor {FALLBACK_TSTAT_KEY})")
    else:
        ok = t >= cfg.min_tstat
        passed &= ok
        reasons.append(f"{key} {t:.2f} {'>=' if ok else '<'} min {cfg.min_tstat:.2f}")

    return GateDecision(bool(passed), reasons)


def submit_gated(
    registry: "Registry",
    files: Mapping[str, Any],
    manifest: Mapping[str, Any],
    candidate_metrics: Mapping[str, Any],
    baseline_metrics: Mapping[str, Any],
    cfg: GateConfig | None = None,
) -> tuple[str, GateDecision]:
    """Register a candidate, then promote it if it passes the gate, else reject it with reasons.

    The incumbent is the promoted version's ``manifest["metrics"]``. The candidate's metrics are
    stored as its ``manifest["metrics"]`` (so it is judged by the same numbers when it becomes
    the incumbent), and the decision, config, incumbent and baselines under ``"gate"``. Call it
    with the registry's lock held (``Registry.submit`` does) so the incumbent cannot change
    between the comparison and the promotion.
    """
    from technic.registry.manifest import to_json_value

    cfg = cfg or GateConfig()
    if "metrics" in manifest and to_json_value(manifest["metrics"]) != to_json_value(candidate_metrics):
        raise RegistryError("manifest['metrics'] differs from candidate_metrics; the gate must judge "
                            "the metrics the manifest records (drop one of them)")
    incumbent = registry.promoted()
    inc_metrics = None
    if incumbent is not None:
        inc_metrics = registry.show(incumbent).get("metrics") or {}
    decision = evaluate_gate(candidate_metrics, baseline_metrics, inc_metrics, cfg,
                             incumbent_name=incumbent or "incumbent")
    doc = {**manifest, "metrics": candidate_metrics,
           "gate": {**decision.to_dict(), "config": cfg.to_dict(), "incumbent": incumbent,
                    "baseline_metrics": baseline_metrics}}
    version = registry.register(files, doc)
    if decision.passed:
        registry.promote(version, reason="gate passed: " + "; ".join(decision.reasons))
    else:
        registry.reject(version, "gate failed: " + "; ".join(decision.reasons))
    return version, decision
