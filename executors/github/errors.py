"""Errors of the workflow core.

WorkflowError                  root of what the GitHub Actions core raises
├── WorkflowInvalid            the workflow (or an action) breaks GitHub's syntax rules
│   └── PlanError              the jobs cannot be ordered (unknown or circular `needs`)
├── ExpressionError            an expression does not parse or cannot be evaluated
└── ActionUnavailable          a `uses:` names an action this deployment cannot provide
"""

from __future__ import annotations


class WorkflowError(Exception):
    """Root of the workflow core's errors; `code` becomes a job's error code."""

    code = "invalid_workflow"


class WorkflowInvalid(WorkflowError):
    """The workflow or an action definition is not valid."""


class PlanError(WorkflowInvalid):
    """The workflow's jobs cannot be put in `needs` order."""


class ExpressionError(WorkflowError):
    """An expression is malformed or fails (names the expression and the reason)."""

    code = "expression_error"

    def __init__(self, expression: str, reason: str) -> None:
        super().__init__(f"invalid expression `{expression}`: {reason}")
        self.expression = expression
        self.reason = reason


class ActionUnavailable(WorkflowError):
    """An action named by `uses:` is not available offline."""

    code = "action_unavailable"

    def __init__(self, uses: str, reason: str) -> None:
        super().__init__(f"action {uses} is not available: {reason}")
        self.uses = uses
