"""The on-disk model registry: versioned artifacts, verified loads, promotion state.

Layout (``root`` defaults to ``$TECHNIC_REGISTRY`` else ``./registry``)::

    <root>/versions/v0001/{model.txt, ..., manifest.json}
    <root>/state.json   {"promoted": "v0001"|null, "history": [...], "index": {version: manifest_sha256}}
    <root>/.lock        advisory lock serialising state read-modify-write

Why this shape: a version directory is immutable apart from its status fields, so a worker can
load it while training writes the next one; ``state.json`` is the single source of truth for
which version serves, replaced atomically (temp file + ``os.replace``) so readers never see a
half-written file; version ids are allocated with ``mkdir(exist_ok=False)`` so two writers can
never share one; and every load re-hashes every file against the manifest, and the manifest
against the hash indexed in ``state.json``, refusing anything tampered with.
"""

from __future__ import annotations

import os
import re
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

import orjson

from technic.errors import RegistryError
from technic.registry import manifest as mf
from technic.registry.gate import GateConfig, GateDecision, submit_gated

try:  # POSIX advisory locks; elsewhere fall back to mkdir allocation alone.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

ENV_VAR = "TECHNIC_REGISTRY"
STATUSES = ("candidate", "promoted", "rejected", "retired", "rolled_back")
_VERSION_RE = re.compile(r"^v(\d{4,})$")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class LoadedVersion:
    """A verified version: its id, manifest, and checked access to its artifact files."""

    def __init__(self, version: str, manifest: dict, folder: Path):
        self.version = version
        self.manifest = manifest
        self._folder = folder

    @property
    def files(self) -> list[str]:
        return sorted(self.manifest["files"])

    def path(self, name: str) -> Path:
        if name not in self.manifest["files"]:
            raise RegistryError(f"{self.version} has no artifact {name!r}; it has {self.files}")
        return self._folder / name

    def read_bytes(self, name: str) -> bytes:
        """The file's bytes, re-checked against the manifest (it may have changed since load)."""
        data = self.path(name).read_bytes()
        expected = self.manifest["files"][name]["sha256"]
        got = mf.sha256_bytes(data)
        if got != expected:
            raise mf.checksum_error(self.version, name, expected, got)
        return data

    def __repr__(self) -> str:
        return f"LoadedVersion({self.version!r}, files={self.files})"


class Registry:
    """Versioned, checksummed, gated model store rooted at a directory (see module docstring)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root if root is not None else os.environ.get(ENV_VAR, "registry"))
        self._tlock = threading.RLock()
        self._depth = 0
        self._lock_fh = None

    # ------------------------------------------------------------------ plumbing
    @property
    def _versions(self) -> Path:
        return self.root / "versions"

    @property
    def _state_path(self) -> Path:
        return self.root / "state.json"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Re-entrant (per instance) exclusive lock over state changes, across processes too."""
        with self._tlock:
            if self._depth == 0:
                self._versions.mkdir(parents=True, exist_ok=True)
                self._lock_fh = open(self.root / ".lock", "a+b")
                if fcntl is not None:
                    fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._lock_fh.close()  # closing releases the flock
                    self._lock_fh = None

    def _read_state(self) -> dict:
        try:
            state = orjson.loads(self._state_path.read_bytes())
        except FileNotFoundError:
            return {"promoted": None, "history": [], "index": {}}
        except orjson.JSONDecodeError as exc:
            raise RegistryError(f"{self._state_path} is not valid JSON ({exc}); restore it from backup") from exc
        state.setdefault("promoted", None)
        state.setdefault("history", [])
        state.setdefault("index", {})
        return state

    def _write_state(self, state: dict) -> None:
        mf.atomic_write(self._state_path, mf.pretty_json(state))

    def _check_version(self, version: str, state: dict | None = None) -> str:
        if not isinstance(version, str) or not _VERSION_RE.match(version):
            raise RegistryError(f"bad version id {version!r}; expected an id like 'v0003'")
        state = state if state is not None else self._read_state()
        if version not in state["index"] or not (self._versions / version).is_dir():
            known = ", ".join(sorted(state["index"], key=_vnum)) or "none"
            raise RegistryError(f"unknown version {version!r} in registry {self.root} (known: {known})")
        return version

    def _read_manifest(self, version: str) -> dict:
        p = self._versions / version / mf.MANIFEST_NAME
        try:
            return orjson.loads(p.read_bytes())
        except FileNotFoundError:
            raise RegistryError(f"{version} has no {mf.MANIFEST_NAME} at {p}") from None
        except orjson.JSONDecodeError as exc:
            raise RegistryError(f"{version}/{mf.MANIFEST_NAME} is not valid JSON ({exc})") from exc

    def _verified_manifest(self, version: str) -> dict:
        """Read and verify a manifest against the index, without racing a status change.

        A status change rewrites manifest.json and then state.json; a lock-free reader caught
        between the two sees a mismatch, so a failure is re-checked once under the writers' lock.
        """
        def attempt() -> dict:
            state = self._read_state()
            self._check_version(version, state)
            doc = self._read_manifest(version)
            mf.verify_manifest(version, doc, state["index"][version])
            return doc

        try:
            return attempt()
        except RegistryError as first:
            try:
                with self._locked():
                    return attempt()
            except OSError:  # read-only registry: nobody can be writing, so the error stands
                raise first from None

    def _allocate(self) -> str:
        """Create the next version folder; ``exist_ok=False`` makes a race lose cleanly and retry."""
        self._versions.mkdir(parents=True, exist_ok=True)
        for _ in range(1000):
            nums = [_vnum(p.name) for p in self._versions.iterdir() if _VERSION_RE.match(p.name)]
            version = f"v{max(nums, default=0) + 1:04d}"
            try:
                (self._versions / version).mkdir(exist_ok=False)
                return version
            except FileExistsError:
                continue
        raise RegistryError(f"could not allocate a version folder under {self._versions}")

    # ------------------------------------------------------------------- writing
    def register(
        self,
        files: Mapping[str, bytes | os.PathLike | str],
        manifest: Mapping[str, Any],
        status: str = "candidate",
    ) -> str:
        """Copy ``files`` into a new version with a checksummed manifest; return the version id.

        ``files`` maps artifact names to bytes or source paths. ``manifest`` holds the caller's
        keys (data_range, data_hash, feature_names, feature_registry_hash, params, fold_metrics,
        metrics, reference_distributions, ...); registry-owned keys may not be set.
        """
        if status not in ("candidate", "rejected"):
            raise RegistryError(f"register status must be 'candidate' or 'rejected', got {status!r}; "
                                "use promote() or submit() to serve a model")
        if not files:
            raise RegistryError("register needs at least one artifact file")
        clash = sorted(set(manifest) & set(mf.RESERVED_KEYS))
        if clash:
            raise RegistryError(f"manifest keys {clash} are set by the registry; remove them")
        for name in files:
            mf.check_artifact_name(name)
        extra = mf.to_json_value(dict(manifest))  # fail on non-JSON before touching disk

        with self._locked():
            version = self._allocate()
            folder = self._versions / version
            try:
                meta = {name: self._copy_in(name, src, folder / name) for name, src in files.items()}
                body = {**extra, "version": version, "created_at": _now(), "status": status,
                        "status_reason": "", "status_at": None, "files": meta}
                doc = mf.stamp(body)
                mf.atomic_write(folder / mf.MANIFEST_NAME, mf.pretty_json(doc))
            except BaseException:
                _remove_tree(folder)
                raise
            state = self._read_state()
            state["index"][version] = doc[mf.HASH_KEY]
            if status == "rejected":
                state["history"].append(_event(version, "reject", "registered as rejected"))
            self._write_state(state)
        return version

    @staticmethod
    def _copy_in(name: str, src: bytes | os.PathLike | str, dest: Path) -> dict:
        if isinstance(src, (bytes, bytearray, memoryview)):
            data = bytes(src)
        else:
            p = Path(src)
            if not p.is_file():
                raise RegistryError(f"artifact {name!r}: source file {p} does not exist")
            data = p.read_bytes()
        mf.check_artifact_bytes(name, data[:4096], data)
        dest.write_bytes(data)
        return {"sha256": mf.sha256_bytes(data), "bytes": len(data)}

    def _set_status(self, state: dict, version: str, status: str, reason: str, at: str) -> None:
        """Rewrite a manifest's status fields and re-index its hash (caller holds the lock)."""
        doc = self._read_manifest(version)
        mf.verify_manifest(version, doc, state["index"].get(version))
        doc.update(status=status, status_reason=reason, status_at=at)
        doc = mf.stamp(doc)
        mf.atomic_write(self._versions / version / mf.MANIFEST_NAME, mf.pretty_json(doc))
        state["index"][version] = doc[mf.HASH_KEY]

    def promote(self, version: str, reason: str = "", *, force: bool = False) -> None:
        """Serve ``version``; the previously promoted one becomes 'retired'.

        A rejected version is refused unless ``force=True`` (a deliberate human override).
        """
        with self._locked():
            state = self._read_state()
            self._check_version(version, state)
            self.load(version)  # never promote something that would not load
            if state["promoted"] == version:
                raise RegistryError(f"{version} is already promoted")
            doc = self._read_manifest(version)
            if doc.get("status") == "rejected" and not force:
                raise RegistryError(f"{version} was rejected ({doc.get('status_reason') or 'no reason'}); "
                                    f"to serve it anyway: technic registry promote {version} --force")
            self._switch(state, version, "promote", reason)

    def _switch(self, state: dict, version: str, action: str, reason: str) -> None:
        at = _now()
        previous = state["promoted"]
        if previous is not None:
            old = "rolled_back" if action == "rollback" else "retired"
            try:
                self._set_status(state, previous, old, f"{action} to {version}", at)
            except RegistryError as exc:  # a tampered incumbent must not block recovery
                reason = f"{reason} (previous {previous} left as is: {exc})".strip()
        self._set_status(state, version, "promoted", reason, at)
        state["promoted"] = version
        state["history"].append({**_event(version, action, reason, at), "previous": previous})
        self._write_state(state)

    def reject(self, version: str, reason: str) -> None:
        """Mark ``version`` rejected, keeping ``reason`` in its manifest and the history."""
        if not reason:
            raise RegistryError("reject needs a reason (it is kept in the manifest)")
        with self._locked():
            state = self._read_state()
            self._check_version(version, state)
            if state["promoted"] == version:
                raise RegistryError(f"{version} is the promoted version; roll back or promote another first")
            at = _now()
            self._set_status(state, version, "rejected", reason, at)
            state["history"].append(_event(version, "reject", reason, at))
            self._write_state(state)

    def rollback(self, to: str | None = None, reason: str = "") -> str:
        """Serve an earlier version again; return it.

        ``to=None`` means the version promoted before the current one (promotions form a stack:
        promote pushes, rollback pops), so repeated rollbacks walk back through history.
        """
        with self._locked():
            state = self._read_state()
            current = state["promoted"]
            if current is None:
                raise RegistryError("nothing is promoted; there is nothing to roll back")
            if to is None:
                stack = _promotion_stack(state["history"])
                if len(stack) < 2:
                    raise RegistryError(f"{current} has no earlier promoted version to roll back to")
                to = stack[-2]
            self._check_version(to, state)
            if to == current:
                raise RegistryError(f"{to} is already promoted")
            if self._read_manifest(to).get("status") == "rejected":
                raise RegistryError(f"cannot roll back to {to}: it was rejected")
            self.load(to)
            self._switch(state, to, "rollback", reason or f"rollback from {current}")
            return to

    def submit(
        self,
        files: Mapping[str, bytes | os.PathLike | str],
        manifest: Mapping[str, Any],
        candidate_metrics: Mapping[str, Any],
        baseline_metrics: Mapping[str, Any],
        cfg: GateConfig | None = None,
    ) -> tuple[str, GateDecision]:
        """Register a candidate, then promote it if it passes the gate, else reject it.

        The incumbent is the promoted version's ``manifest["metrics"]``; the decision (with its
        numbers) and the config are stored in the new manifest under ``"gate"``.
        """
        with self._locked():
            return submit_gated(self, files, manifest, candidate_metrics, baseline_metrics, cfg)

    # ------------------------------------------------------------------- reading
    def promoted(self) -> str | None:
        return self._read_state()["promoted"]

    def history(self) -> list[dict]:
        return self._read_state()["history"]

    def path(self, version: str) -> Path:
        return self._versions / self._check_version(version)

    def show(self, version: str) -> dict:
        """The manifest of ``version``, after checking its hash against the index."""
        return self._verified_manifest(version)

    def list(self, metric: str = "rank_ic_mean") -> list[dict]:
        """One row per version, oldest first: version, created_at, status, promoted, ``metric``."""
        state = self._read_state()
        rows = []
        for version in sorted(state["index"], key=_vnum):
            try:
                doc = self._read_manifest(version)
            except RegistryError:
                doc = {"status": "missing"}
            rows.append({"version": version, "created_at": doc.get("created_at"),
                         "status": doc.get("status"), "promoted": version == state["promoted"],
                         metric: (doc.get("metrics") or {}).get(metric)})
        return rows

    def load(self, version: str | None = None) -> LoadedVersion:
        """Verify and return ``version`` (default: the promoted one); refuse anything tampered."""
        state = self._read_state()
        if version is None:
            version = state["promoted"]
            if version is None:
                raise RegistryError(f"no version is promoted in registry {self.root}")
        folder = self._versions / version
        doc = self._verified_manifest(version)
        for name, meta in doc["files"].items():
            p = folder / name
            if not p.is_file():
                raise RegistryError(f"artifact {version}/{name} is missing from {folder}; refusing to load")
            got = mf.sha256_file(p)
            if got != meta["sha256"]:
                raise mf.checksum_error(version, name, meta["sha256"], got)
        return LoadedVersion(version, doc, folder)

    def watch_token(self) -> tuple[int, str | None]:
        """Cheap change token for pollers: (state.json mtime_ns, promoted version)."""
        try:
            mtime = self._state_path.stat().st_mtime_ns
        except FileNotFoundError:
            return (0, None)
        return (mtime, self.promoted())


def _vnum(version: str) -> int:
    m = _VERSION_RE.match(version)
    return int(m.group(1)) if m else -1


def _event(version: str, action: str, reason: str, at: str | None = None) -> dict:
    return {"version": version, "action": action, "at": at or _now(), "reason": reason}


def _promotion_stack(history: list[dict]) -> list[str]:
    """Replay promote (push) / rollback (pop down to target) events into a stack of versions."""
    stack: list[str] = []
    for ev in history:
        if ev["action"] == "promote":
            stack.append(ev["version"])
        elif ev["action"] == "rollback":
            while stack and stack[-1] != ev["version"]:
                stack.pop()
            if not stack:
                stack.append(ev["version"])
    return stack


def _remove_tree(folder: Path) -> None:
    """Remove a half-written version folder (flat: artifacts + manifest only)."""
    if folder.is_dir():
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
