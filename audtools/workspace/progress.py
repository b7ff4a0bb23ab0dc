"""When long work shows a progress bar: on a terminal or in a notebook, never otherwise.

Callers use tqdm directly, ``tqdm(..., disable=hide_bars(progress))``: a disabled bar accepts
``update`` and prints nothing. The CLI passes ``progress=False`` with ``--json`` or ``--quiet``.
"""

from __future__ import annotations

import sys


def hide_bars(progress: bool | None) -> bool:
    """tqdm's ``disable``: hide when ``progress`` is False; when it is None, hide unless
    standard error is a terminal or the code runs in a notebook."""
    if progress is None:
        return not (sys.stderr.isatty() or _in_notebook())
    return not progress


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython  # type: ignore[attr-defined]
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
