"""Model folders and hub ids: a clear error for a wrong path, and the model's config.json as a dict."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ragdistill.core.errors import InputError


def require_model_dir(model: str, what: str = "model") -> None:
    """A local path that does not exist is a typo, not a hub id: say so before anything loads."""
    looks_local = model.startswith((".", "/", "~")) or os.sep in model.strip("/").split("/", 2)[-1]
    path = Path(model).expanduser()
    if looks_local and not path.exists():
        raise InputError(model, f"{what} path does not exist")
    if path.exists() and not (path / "config.json").exists():
        raise InputError(model, f"not a {what}: no config.json in this folder")


def read_model_config(model: str, what: str = "model") -> dict:
    """config.json of a local folder or a hub id (downloaded, or read from the cache when offline), as a dict."""
    require_model_dir(model, what)
    local = Path(model).expanduser()
    if local.is_dir():
        try:
            return json.loads((local / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(local / "config.json", f"not a {what}: unreadable config ({exc})") from None
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(model).to_dict()
    except (OSError, ValueError) as exc:
        raise InputError(model, f"cannot load the {what}'s config: {exc}") from None


def architecture(config: dict) -> str:
    """The model class named first in config.json ('<none>' without one)."""
    architectures = config.get("architectures") or []
    return architectures[0] if architectures else "<none>"
