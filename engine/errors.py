"""Errors of the engine.

EngineError
├── DomainError                 the request cannot be honoured as the log stands
│   ├── NotFound                no such job (or not in this account)
│   ├── InvalidTransition       the job's status does not allow the change
│   ├── IdempotencyConflict     the key was used before with another body
│   └── InvalidInput            a field is malformed; names the field
└── InfrastructureError         something under the engine failed
    ├── StoreUnavailable        NATS / JetStream did not answer
    └── ConcurrencyConflict     another writer appended first (retry after re-reading)
"""

from __future__ import annotations


class EngineError(Exception):
    """Root of every error the engine raises."""


class DomainError(EngineError):
    """The request contradicts the log."""


class NotFound(DomainError):
    """No such job in this account."""

    def __init__(self, what: str, ident: str) -> None:
        super().__init__(f"{what} {ident} not found")
        self.what = what
        self.ident = ident


class InvalidTransition(DomainError):
    """The job's current status does not allow the change."""

    def __init__(self, job_id: str, status: str, change: str) -> None:
        super().__init__(f"cannot {change} job {job_id}: it is {status}")
        self.job_id = job_id
        self.status = status
        self.change = change


class IdempotencyConflict(DomainError):
    """An idempotency key was reused with a different request body."""

    def __init__(self, key: str, job_id: str) -> None:
        super().__init__(
            f"idempotency_key {key!r} was already used for job {job_id} with a different body"
        )
        self.key = key
        self.job_id = job_id


class InvalidInput(DomainError):
    """A field of a request is malformed."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InfrastructureError(EngineError):
    """A dependency of the engine failed."""


class StoreUnavailable(InfrastructureError):
    """The event store did not answer."""


class ConcurrencyConflict(InfrastructureError):
    """Another writer appended to the aggregate first."""

    def __init__(self, subject: str, expected: int) -> None:
        super().__init__(f"{subject} moved past sequence {expected}")
        self.subject = subject
        self.expected = expected
