"""The version of audtools: a module of its own, so that any module can read it without
importing the package root (``audtools/__init__.py``), which sits above every layer."""

from __future__ import annotations

__version__ = "0.1.0"
"""The release; ``pyproject.toml`` states the same (a test checks that they agree)."""
