"""Manifests, canonical JSON, checksums and the artifact format whitelist.

A version's ``manifest.json`` says what was trained (data range and hash, feature names and
the feature-registry hash, params, fold and summary metrics, reference distributions for
drift) and pins every artifact file by SHA-256. The manifest itself is pinned by
``manifest_sha256``: the SHA-256 of the canonical JSON (sorted keys, NaN -> null) of the
manifest without that key. The registry keeps a copy of that hash in its state index, so an
edited manifest is caught even if the editor also rewrote the embedded hash.

Only formats that load without executing code are accepted: LightGBM text models (``.txt``),
XGBoost ``.json``/``.ubj``, torch ``.pt`` state_dicts (zip format, to be loaded with
``weights_only=True``), ``.json`` configs, ``.npy`` arrays (no object dtype) and ``.parquet``.
Pickle in any guise is refused: loading a pickle runs arbitrary code.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import orjson

from technic.errors import RegistryError

ALLOWED_SUFFIXES = (".txt", ".json", ".ubj", ".pt", ".npy", ".parquet")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
MANIFEST_NAME = "manifest.json"
HASH_KEY = "manifest_sha256"
#: keys the registry owns; callers may not set them in the manifest they pass.
RESERVED_KEYS = ("version", "created_at", "status", "status_reason", "status_at", "files", HASH_KEY)

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_CHUNK = 1 << 20


# --------------------------------------------------------------------------- JSON
def _default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serializable")


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, numpy scalars/arrays as lists, NaN/inf -> null."""
    try:
        return orjson.dumps(
            obj,
            default=_default,
            option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
        )
    except TypeError as exc:  # orjson.JSONEncodeError subclasses TypeError
        raise RegistryError(f"manifest is not plain JSON: {exc}") from exc


def to_json_value(obj: Any) -> Any:
    """Normalise ``obj`` to what it will read back as from disk (so hashes match after reload)."""
    return orjson.loads(canonical_json(obj))


def pretty_json(obj: Any) -> bytes:
    """Human-readable JSON (indented, sorted) for files people will open."""
    return orjson.dumps(
        to_json_value(obj), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    ) + b"\n"


# ------------------------------------------------------------------ atomic files
def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync, then ``os.replace``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# ----------------------------------------------------------------------- hashing
def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, streamed in 1 MiB chunks so large artifacts don't load into RAM."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_hash(manifest: dict) -> str:
    """SHA-256 of the canonical JSON of ``manifest`` without its ``manifest_sha256`` key."""
    body = {k: v for k, v in manifest.items() if k != HASH_KEY}
    return sha256_bytes(canonical_json(body))


def stamp(manifest: dict) -> dict:
    """Return a JSON-normalised copy of ``manifest`` with a fresh ``manifest_sha256``."""
    out = to_json_value({k: v for k, v in manifest.items() if k != HASH_KEY})
    out[HASH_KEY] = manifest_hash(out)
    return out


def verify_manifest(version: str, manifest: dict, indexed_hash: str | None) -> None:
    """Check the manifest against its embedded hash and the registry index; raise on mismatch."""
    got = manifest_hash(manifest)
    embedded = manifest.get(HASH_KEY)
    for label, expected in (("embedded", embedded), ("indexed", indexed_hash)):
        if expected != got:
            raise RegistryError(
                f"manifest {version}/{MANIFEST_NAME} failed its checksum ({label} hash): "
                f"expected {_short(expected)}, got {_short(got)}; refusing to load a tampered artifact"
            )


def _short(h: str | None) -> str:
    return "nothing" if not h else h[:12] + "…"


def checksum_error(version: str, name: str, expected: str, got: str) -> RegistryError:
    return RegistryError(
        f"artifact {version}/{name} failed its checksum: expected {_short(expected)}, "
        f"got {_short(got)}; refusing to load a tampered artifact"
    )


# ----------------------------------------------------------------- format checks
def check_artifact_name(name: str) -> None:
    """A plain file name with a whitelisted suffix; pickles get their own message."""
    if not isinstance(name, str) or not _NAME_RE.match(name) or ".." in name:
        raise RegistryError(
            f"artifact name {name!r} is not a plain file name (letters, digits, '.', '_', '-'; no folders)"
        )
    low = name.lower()
    if low.endswith(PICKLE_SUFFIXES):
        raise RegistryError(
            f"artifact {name!r}: pickle is not accepted (loading it runs arbitrary code); "
            f"save models as LightGBM .txt, XGBoost .json/.ubj or a torch state_dict .pt"
        )
    if low == MANIFEST_NAME:
        raise RegistryError(f"artifact name {name!r} is reserved for the registry's manifest")
    if not low.endswith(ALLOWED_SUFFIXES):
        raise RegistryError(
            f"artifact {name!r} has an unsupported format; allowed: {', '.join(ALLOWED_SUFFIXES)}"
        )


def check_artifact_bytes(name: str, head: bytes, data: bytes | None) -> None:
    """Cheap content sniffing so a pickle renamed to an allowed suffix is still refused.

    ``head`` is the first bytes of the file; ``data`` the whole content when already in
    memory (text formats are then checked to decode/parse).
    """
    low = name.lower()
    if head[:1] == b"\x80" and not low.endswith((".ubj", ".parquet")):
        raise RegistryError(f"artifact {name!r} looks like a pickle stream: pickle is not accepted")
    if low.endswith(".npy"):
        _check_npy(name, head)
    elif low.endswith(".pt") and not head.startswith(b"PK"):
        raise RegistryError(
            f"artifact {name!r} is not a zip-format torch file (torch.save of a state_dict); "
            "legacy .pt files are raw pickles: pickle is not accepted"
        )
    elif low.endswith(".parquet") and not head.startswith(b"PAR1"):
        raise RegistryError(f"artifact {name!r} is not a parquet file (missing PAR1 magic)")
    elif data is not None and low.endswith(".json"):
        try:
            orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise RegistryError(f"artifact {name!r} is not valid JSON: {exc}") from exc
    elif data is not None and low.endswith(".txt"):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RegistryError(f"artifact {name!r} is not UTF-8 text: {exc}") from exc


def _check_npy(name: str, head: bytes) -> None:
    if not head.startswith(b"\x93NUMPY"):
        raise RegistryError(f"artifact {name!r} is not a .npy file (missing \\x93NUMPY magic)")
    end = head.find(b"}")
    header = head[: end if end > 0 else 4096].decode("latin-1", errors="replace")
    if re.search(r"'\|?O'", header):  # object dtype, alone or as a structured field
        raise RegistryError(
            f"artifact {name!r} holds an object-dtype array (stored as pickle): pickle is not accepted"
        )
