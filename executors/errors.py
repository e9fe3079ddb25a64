"""Errors executors raise to their callers (the pool, `chaser serve`).

ExecutorError
├── BackendUnavailable      the backend (Docker, Chromium) did not answer at start-up: the
│                           family is not served by this process
└── JobProblem              a reason to fail one attempt, with its stable error code
"""

from __future__ import annotations


class ExecutorError(Exception):
    """Root of the errors executors raise."""


class BackendUnavailable(ExecutorError):
    """The family's backend cannot be reached; the process starts without the family."""


class JobProblem(ExecutorError):
    """One attempt cannot go on: `code` and the message become the job's error."""

    def __init__(self, code: str, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retriable = retriable
