"""carbonx's version as installed: ``pyproject.toml`` is the one place it is written, so
that ``carbonx --version`` and the OpenAPI document can never disagree."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["VERSION"]

try:
    VERSION: str = version("carbonx")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0+unknown"
