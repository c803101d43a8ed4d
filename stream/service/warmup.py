"""Getting a worker process ready before it serves: compiled kernels loaded, model warmed, heap settled.

* ``features.incremental.warm_up``: numba loads each compiled kernel from its on-disk cache on first
  use (0.3-0.7 s in all), which the first live timestamp would otherwise pay;
* ``stages.models.warm_scorer``: one throwaway prediction (boosters' first call, TreeSHAP);
* ``gc.collect(); gc.freeze()``: what start-up built (modules, the model, the registry) moves out of
  the collector's reach, so a full collection during live scoring walks only live-path objects.
"""

from __future__ import annotations

import gc
import logging

from technic.features.incremental import warm_up

from stream.stages.models import warm_scorer

log = logging.getLogger("technic.worker")


def warm_process(sectors=None, scorer=None, top_k: int = 0) -> None:
    kernels = warm_up(sectors)
    model = warm_scorer(scorer, top_k) if scorer is not None else 0.0
    gc.collect()
    gc.freeze()
    log.info("warm-up: compiled kernels %.2f s, model %.2f s; %d start-up objects frozen", kernels, model,
             gc.get_freeze_count())
