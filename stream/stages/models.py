"""Which model scores: the promoted registry version, hot-reloaded between timestamps.

A control message (``model_promoted``/``reload``) or a promotion seen by
polling the registry loads the new version *next to* the current one (its
checksums verified by the registry); the pipeline switches at the next
timestamp boundary, so one timestamp is never scored by two models.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from technic.errors import RegistryError

from stream.io.codecs import RecordError, decode

log = logging.getLogger(__name__)


def warm_scorer(scorer, top_k: int = 5) -> float:
    """One throwaway ``predict`` (with contributions when ``top_k``) on a small synthetic universe,
    so a model's first live timestamp does not pay its lazy set-up (boosters' first call, TreeSHAP,
    torch); returns the seconds it took (0 without a scorer). Its outputs are discarded."""
    if scorer is None or not hasattr(scorer, "feature_names"):
        return 0.0
    import time

    import numpy as np
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    k, p = 16, len(scorer.feature_names)
    seq = int(getattr(scorer, "seq_len", 0) or 0)
    hist = rng.standard_normal((k, seq, p)) if seq else None
    try:
        scorer.predict(rng.standard_normal((k, p)), hist, top_k, np.zeros(k, np.int64))
    except Exception as e:  # a warm-up must never stop a worker; the first real timestamp will tell
        log.warning("model warm-up failed (%s); the first timestamp pays the set-up", e)
    return time.perf_counter() - t0


def control_command(models: "ModelSource", raw: bytes, max_bytes: int) -> tuple[str, str] | None:
    """Apply one ``technic.control`` record to ``models`` (both stages that score read control).

    ``model_promoted`` / ``reload`` load the named version (None: the promoted one) next to the
    current one, to switch at the next timestamp; returns ``(at, message)`` for the stage's
    ``model_reload`` alert, None for a command that changes nothing here. Raises ``RecordError``:
    ``deserialize``/``schema`` (malformed) or ``unknown_model`` (the registry refuses the version;
    the current model keeps scoring)."""
    rec = decode("control", raw, max_bytes=max_bytes)
    if rec["type"] not in ("model_promoted", "reload"):
        return None
    try:
        v = models.request(rec.get("model_version"))
    except RegistryError as e:
        raise RecordError("unknown_model", str(e)) from None
    return rec["at"], f"model {v} will score from the next timestamp"


def _default_loader(root, version):
    from technic.models.scoring import load_scorer
    return load_scorer(root, version)


class ModelSource:
    """Holds the current scorer and a pending one to switch to at the next timestamp."""

    def __init__(self, registry_root: str | Path | None, version: str | None = None,
                 loader: Callable[[Any, str | None], Any] | None = None, scorer: Any = None):
        self.root = registry_root
        self.loader = loader or _default_loader
        self.current = scorer
        self.pending = None
        self._token = None
        if self.current is None and registry_root is not None:
            try:
                self.current = self.loader(registry_root, version)
            except RegistryError as e:
                log.warning("no model loaded: %s", e)
        self._token = self._watch_token()

    @property
    def version(self) -> str | None:
        return getattr(self.current, "version", None)

    def request(self, version: str | None) -> str:
        """Load ``version`` (None = promoted) to take effect at the next timestamp.

        Raises ``RegistryError`` for an unknown or tampered version; the
        current model keeps scoring.
        """
        if self.root is None:
            raise RegistryError("no registry configured: cannot load a model version")
        scorer = self.loader(self.root, version)
        if scorer.version != self.version:
            warm_scorer(scorer)   # its first timestamp then costs what every later one does
            self.pending = scorer
        return scorer.version

    def poll_registry(self) -> str | None:
        """If the registry's promoted version changed, queue it; return it (else None)."""
        token = self._watch_token()
        if token is None or token == self._token:
            return None
        self._token = token
        promoted = token[1]
        if promoted and promoted != self.version:
            return self.request(promoted)
        return None

    def at_boundary(self) -> str | None:
        """Switch to the pending model (called before scoring a timestamp); return new version."""
        if self.pending is None:
            return None
        old, (self.current, self.pending) = self.version, (self.pending, None)
        log.info("model switched: %s -> %s", old, self.current.version)
        return self.current.version

    def _watch_token(self):
        if self.root is None:
            return None
        try:
            from technic.registry import Registry
            return tuple(Registry(self.root).watch_token())
        except Exception:  # registry missing or unreadable: nothing to watch
            return None
