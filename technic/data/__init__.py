"""Data layer: loaders (bars, fundamentals, securities, alt, splits), validation, quality, point-in-time
joins, split-consistent fundamentals.

Every loader returns a canonical frame and raises `technic.errors.DataError` (file, row,
column) on malformed input. Labels live apart, in `technic.labels`.
"""

from technic.data.alt import ALT_FIELDS, load_alt, make_synthetic_alt
from technic.data.bars import BAR_COLUMNS, clean_bars, load_bars, validate_bars
from technic.data.fundamentals import FUNDAMENTAL_FIELDS, derive_growth, load_fundamentals
from technic.data.pit import asof_alt, asof_fundamentals
from technic.data.quality import POLICY, QualityReport, quality_report
from technic.data.securities import load_securities, sector_map
from technic.data.split_adjustment import PRICE_BASES, split_consistent
from technic.data.split_report import SplitReport
from technic.data.splits import load_splits

__all__ = [
    "ALT_FIELDS", "BAR_COLUMNS", "FUNDAMENTAL_FIELDS", "POLICY", "PRICE_BASES", "QualityReport", "SplitReport",
    "asof_alt", "asof_fundamentals", "clean_bars", "derive_growth", "load_alt", "load_bars",
    "load_fundamentals", "load_securities", "load_splits", "make_synthetic_alt", "quality_report",
    "sector_map", "split_consistent", "validate_bars",
]
