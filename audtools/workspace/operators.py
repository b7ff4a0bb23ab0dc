"""Operators and the IMS rule: only operators who log in through IMS may share audiences."""

from __future__ import annotations

from audtools.config import Operator, WorkspaceConfig
from audtools.errors import RefusedError


def check_operator(config: WorkspaceConfig, name: str | None) -> Operator:
    """The operator ``name`` (default: the workspace's ``default_operator``), if allowed.

    Raises:
        RefusedError: ``unknown_operator`` when no ``[[operators]]`` entry has that name;
            ``not_ims`` when the operator does not log in through IMS (Adobe ID).
    """
    name = name or config.default_operator
    operator = config.operators.get(name)
    if operator is None:
        known = ", ".join(config.operators) or "none"
        raise RefusedError(
            f"Unknown operator {name!r} (configured: {known}); add it to audtools.toml.",
            code="unknown_operator",
        )
    if operator.login != "ims":
        raise RefusedError(
            f"Operator {name!r} logs in with {operator.login!r}: sharing audiences needs an "
            "operator who logs in through IMS (Adobe ID). Use another operator.",
            code="not_ims",
        )
    return operator
