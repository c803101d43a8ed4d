"""Data layer: loaders (bars, fundamentals, securities, alt), validation, quality, point-in-time joins.

Every loader returns a canonical frame and raises `technic.errors.DataError` (file, row,
column) on malformed input. Labels live apart, in `technic.labels`.
"""

from technic.data.alt import ALT_FIELDS, load_alt, make_synthetic_alt
from technic.data.bars import BAR_COLUMNS, clean_bars, load_bars, validate_bars
from technic.data.fundamentals import FUNDAMENTAL_FIELDS, derive_growth, load_fundamentals
from technic.data.pit import asof_alt, asof_fundamentals
from technic.data.quality import POLICY, QualityReport, quality_report
from technic.data.securities import load_securities, sector_map

__all__ = [
    "ALT_FIELDS", "BAR_COLUMNS", "FUNDAMENTAL_FIELDS", "POLICY", "QualityReport",
    "asof_alt", "asof_fundamentals", "clean_bars", "derive_growth", "load_alt", "load_bars",
    "load_fundamentals", "load_securities", "make_synthetic_alt", "quality_report",
    "sector_map", "validate_bars",
]
