"""Progress bars for long loops (stderr; silent when not a terminal or under CI)."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager


@contextmanager
def progress_bar(total: int, desc: str):
    """Yield a ``tick(n)`` callable advancing a tqdm bar by ``n``."""
    from tqdm import tqdm
    disable = os.environ.get("CI") == "true" or not sys.stderr.isatty()
    bar = tqdm(total=total, desc=desc, unit="", disable=disable, leave=False, file=sys.stderr)
    try:
        yield bar.update
    finally:
        bar.close()
