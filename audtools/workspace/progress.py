"""Progress bars for long work: tqdm on a terminal or in a notebook, nothing otherwise."""

from __future__ import annotations

import sys
from typing import Any


class _NoBar:
    def update(self, n: int = 1) -> None:
        """Ignore progress."""

    def close(self) -> None:
        """Nothing to close."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def bar(total: int | None, desc: str, enabled: bool | None = None, unit: str = "B") -> Any:
    """A progress bar, or an object with the same ``update``/``close`` that shows nothing.

    Args:
        total: the amount of work (bytes by default).
        desc: a few words on what is done.
        enabled: True to show, False to hide, None to show only on a terminal or notebook.
        unit: the unit of ``total``.
    """
    if enabled is None:
        enabled = sys.stderr.isatty() or _in_notebook()
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=False)


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython  # type: ignore[attr-defined]
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
