"""Optimistic appends: decide on a state, append at its sequence, and after a lost race re-read
and decide again. The one loop every writer (API, dispatcher, executors, sessions) goes through."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from engine.errors import ConcurrencyConflict
from engine.store import EventStore, Recorded
from schemas.log import AnyEvent

State = TypeVar("State")
Event = TypeVar("Event", bound=AnyEvent)


async def append_decided(
    store: EventStore,
    state: State,
    decision: Callable[[State], Event | None],
    *,
    reload: Callable[[], Awaitable[State]],
    seq_of: Callable[[State], int],
    tries: int = 8,
) -> tuple[State, Event, Recorded] | None:
    """Append what `decision` says about `state`; None when it declines.

    Returns the state the winning decision was made on, the event and where it was stored.
    Raises ConcurrencyConflict when `tries` races in a row were lost.
    """
    for _ in range(tries):
        event = decision(state)
        if event is None:
            return None
        try:
            rec = await store.append(event, expected_seq=seq_of(state))
        except ConcurrencyConflict:
            state = await reload()
            continue
        return state, event, rec
    raise ConcurrencyConflict("decision", seq_of(state))
