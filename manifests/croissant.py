"""Croissant (MLCommons) metadata for a built dataset, generated from its manifest."""

from __future__ import annotations

from typing import Any


def build_croissant(manifest: dict[str, Any]) -> dict[str, Any]:
    """A Croissant JSON-LD description of a built dataset (placeholder, completed later)."""
    return {"@type": "sc:Dataset", "name": f"{manifest['source']}-{manifest['version']}"}
