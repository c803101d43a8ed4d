"""Versioned, checksummed, gated model registry.

``Registry`` stores each trained model as an immutable version folder with a manifest that
pins every artifact by SHA-256; loads verify everything and refuse tampered files; promotion
goes through ``evaluate_gate`` (beat the baselines, the incumbent and noise) and is recorded
in an atomically written ``state.json`` that stream workers poll via ``watch_token()``.
"""

from technic.registry.gate import GateConfig, GateDecision, evaluate_gate
from technic.registry.store import LoadedVersion, Registry

__all__ = ["GateConfig", "GateDecision", "LoadedVersion", "Registry", "evaluate_gate"]
