"""Classic, literature-signed factors: priors the ML is a tilt on (GUIDE section 3).

``library`` declares each factor once (its feature inputs, their signs, the theme and the
reference); ``scores`` evaluates them on ONE timestamp's cross-section (the same function in the
batch backtest, in training and in the stream's Scorer, so batch and stream agree exactly);
``composite`` averages the factor scores into one prior signal.
"""

from .composite import FactorComposite
from .library import FACTORS, FACTOR_NAMES, Factor, Term, factor_inputs
from .scores import factor_panel, factor_scores

__all__ = ["FACTORS", "FACTOR_NAMES", "Factor", "FactorComposite", "Term", "factor_inputs", "factor_panel",
           "factor_scores"]
