"""Session keeping for executors that host live sessions (containers, browser contexts).

Opens: a durable pull consumer of CHASER_CONTROL for the family takes each SessionOpened,
starts the resource and appends SessionStarted (or SessionFailed). Closes: the keeper listens to
the log's SessionTerminated / SessionExpired / SessionFailed subjects and closes what it owns.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from engine import sessions as rules
from engine.aggregates import SessionItem, SessionService
from engine.decide import Stamp
from engine.errors import EngineError, InvalidTransition
from engine.subjects import CONTROL_STREAM, control_filter, session_events
from executors.base import SessionHost
from schemas.sessions import SESSION_ENDED, AnySessionEvent, SessionState, SessionStatus

log = structlog.get_logger("chaser.sessions")

_decode_item = msgspec.json.Decoder(SessionItem).decode
_ENDINGS = ("SessionTerminated", "SessionExpired", "SessionFailed")


class SessionKeeper:
    """Opens and closes the sessions of one executor family in this process."""

    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        sessions: SessionService,
        host: SessionHost,
        *,
        family: str,
        executor_id: str,
    ) -> None:
        self._nc = nc
        self._js = js
        self._sessions = sessions
        self._host = host
        self._family = family
        self._executor_id = executor_id
        self.owned: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None
        self._subs: list[object] = []

    async def start(self) -> None:
        """Start taking session opens and watching session endings."""
        durable = f"chaser-{self._family}-sessions"
        sub = await self._js.pull_subscribe(
            control_filter(self._family),
            durable=durable,
            stream=CONTROL_STREAM,
            config=ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=60.0,
                max_deliver=5,
                filter_subject=control_filter(self._family),
            ),
        )
        for ending in _ENDINGS:
            self._subs.append(await self._nc.subscribe(session_events(ending), cb=self._on_end))
        self._task = asyncio.create_task(self._loop(sub), name=f"sessions-{self._family}")

    async def _loop(self, sub: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                msgs = await sub.fetch(8, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except (nats.errors.Error, nats.js.errors.Error) as exc:
                log.warning("session_fetch_failed", error=repr(exc))
                await asyncio.sleep(0.5)
                continue
            await asyncio.gather(*(self._open(msg) for msg in msgs))

    async def _open(self, msg: Msg) -> None:
        item = _decode_item(msg.data).state
        account, session_id = item.account, item.id
        try:
            state = await self._sessions.session(account, session_id)
            if state.status is not SessionStatus.OPENING:
                await msg.ack()
                return
            try:
                resource = await self._host.open_session(state)
            except Exception as exc:
                log.warning("session_open_failed", session_id=session_id, error=repr(exc))
                await self._fail(account, session_id, f"{type(exc).__name__}: {exc}")
                await msg.ack()
                return
            self.owned.add((account, session_id))
            started, _ = await self._sessions.change_session(
                account, session_id, lambda s: self._started(s, resource)
            )
            if started.status is not SessionStatus.OPEN:
                await self._close(account, session_id)
            log.info("session_started", account=account, session_id=session_id)
            await msg.ack()
        except EngineError as exc:
            log.warning("session_store_error", session_id=session_id, error=str(exc))

    def _started(self, state: SessionState, resource: dict[str, object]) -> AnySessionEvent | None:
        if state.status is not SessionStatus.OPENING:
            return None
        return rules.session_started(
            state, self._stamp(), executor_id=self._executor_id, resource=dict(resource)
        )

    def _stamp(self) -> Stamp:
        stamp: Stamp = self._sessions.stamp(self._executor_id)
        return stamp

    async def _fail(self, account: str, session_id: str, message: str) -> None:
        def decision(state: SessionState) -> AnySessionEvent | None:
            if state.status in SESSION_ENDED:
                return None
            return rules.fail_session(
                state, self._stamp(), code="session_start_failed", message=message
            )

        await self._sessions.change_session(account, session_id, decision)

    async def _on_end(self, msg: Msg) -> None:
        tokens = msg.subject.split(".")
        account, session_id = tokens[2], tokens[4]
        if (account, session_id) in self.owned:
            await self._close(account, session_id)

    async def _close(self, account: str, session_id: str) -> None:
        self.owned.discard((account, session_id))
        try:
            state = await self._sessions.load_session(account, session_id)
            await self._host.close_session(state)
        except (EngineError, InvalidTransition) as exc:
            log.warning("session_close_failed", session_id=session_id, error=str(exc))
        else:
            log.info("session_closed", account=account, session_id=session_id)

    async def stop(self) -> None:
        """Stop taking opens. Owned sessions stay up: they belong to clients, not to us."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sub in self._subs:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()  # type: ignore[attr-defined]
