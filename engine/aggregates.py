"""Commands on sessions and workspaces: load from the read model or the log, decide, append."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

import msgspec
import structlog
from msgspec.structs import replace
from nats.js import JetStreamContext

from engine import sessions as rules
from engine.appending import append_decided
from engine.decide import Stamp, job_id_for
from engine.errors import NotFound
from engine.projection import ReadModel
from engine.service import JobService
from engine.store import Recorded
from engine.subjects import CONTROL_STREAM, control_subject
from schemas.sessions import (
    AnySessionEvent,
    AnyWorkspaceEvent,
    SessionEvent,
    SessionState,
    WorkspaceEvent,
    WorkspaceState,
)

log = structlog.get_logger("chaser.sessions")

CONFLICT_TRIES = 8
FAMILY_OF_TYPE = {"sandbox": "sandbox", "browser": "browser"}


class SessionItem(msgspec.Struct, frozen=True, kw_only=True):
    """A session to open, as sent to its executor family on CHASER_CONTROL."""

    state: SessionState


class SessionService:
    """Open, use, end sessions; record workspaces. Every change is an appended event."""

    def __init__(self, jobs: JobService, js: JetStreamContext | None = None) -> None:
        self.jobs = jobs
        self.store = jobs.store
        self.read_model: ReadModel = jobs.read_model
        self._js = js

    def stamp(self, actor: str) -> Stamp:
        """A fresh stamp for an actor."""
        return self.jobs.stamp(actor)

    async def open(
        self,
        account: str,
        actor: str,
        *,
        session_type: str,
        workspace: str | None = None,
        image: str | None = None,
        ephemeral: bool = False,
        ttl_seconds: int | None = None,
        idle_timeout_seconds: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> SessionState:
        """Append SessionOpened and hand the session to its executor family to start."""
        stamp = self.stamp(actor)
        session_id = "ses_" + job_id_for(at=stamp.at, entropy=os.urandom(10)).removeprefix("job_")
        event = rules.open_session(
            session_id=session_id,
            account=account,
            session_type=session_type,  # type: ignore[arg-type]
            stamp=stamp,
            workspace=workspace,
            image=image,
            ephemeral=ephemeral,
            ttl_seconds=ttl_seconds,
            idle_timeout_seconds=idle_timeout_seconds,
            options=options,
        )
        rec = await self.store.append(event, expected_seq=0)
        state = replace(rules.evolve_session(None, event), seq=rec.seq, last_hash=rec.digest)
        if self._js is not None:
            await self._js.publish(
                control_subject(FAMILY_OF_TYPE[session_type], account),
                msgspec.json.encode(SessionItem(state=state)),
                headers={"Nats-Msg-Id": session_id},
                stream=CONTROL_STREAM,
            )
        log.info("session_opened", account=account, session_id=session_id, seq=rec.seq)
        await self.read_model.wait_for(rec.partition, rec.seq, 5.0)
        return self.read_model.session(account, session_id) or state

    async def load_session(self, account: str, session_id: str) -> SessionState:
        """A session folded straight from its stored history."""
        state: SessionState | None = None
        for rec in await self.store.history(account, session_id, "session"):
            assert isinstance(rec.event, SessionEvent)
            state = replace(
                rules.evolve_session(state, rec.event), seq=rec.seq, last_hash=rec.digest
            )
        if state is None:
            raise NotFound("session", session_id)
        return state

    async def session(self, account: str, session_id: str) -> SessionState:
        """A session of the account (read model first, then the log)."""
        return self.read_model.session(account, session_id) or await self.load_session(
            account, session_id
        )

    async def change_session(
        self,
        account: str,
        session_id: str,
        decision: Callable[[SessionState], AnySessionEvent | None],
    ) -> tuple[SessionState, Recorded | None]:
        """Append what `decision` says about a session, re-deciding after a lost race."""
        state = await self.session(account, session_id)
        decided = await append_decided(
            self.store,
            state,
            decision,
            reload=lambda: self.load_session(account, session_id),
            seq_of=lambda s: s.seq,
            tries=CONFLICT_TRIES,
        )
        if decided is None:
            return state, None
        state, event, rec = decided
        folded = rules.evolve_session(state, cast(AnySessionEvent, event))
        return replace(folded, seq=rec.seq, last_hash=rec.digest), rec

    async def load_workspace(self, account: str, name: str) -> WorkspaceState | None:
        """A workspace folded from its stored history, or None if it never existed."""
        state: WorkspaceState | None = None
        for rec in await self.store.history(account, name, "workspace"):
            assert isinstance(rec.event, WorkspaceEvent)
            state = replace(
                rules.evolve_workspace(state, rec.event), seq=rec.seq, last_hash=rec.digest
            )
        return state

    async def change_workspace(
        self,
        account: str,
        name: str,
        decision: Callable[[WorkspaceState | None], AnyWorkspaceEvent | None],
    ) -> WorkspaceState | None:
        """Append what `decision` says about a workspace, re-deciding after a lost race."""
        state = self.read_model.workspace(account, name) or await self.load_workspace(account, name)
        decided = await append_decided(
            self.store,
            state,
            decision,
            reload=lambda: self.load_workspace(account, name),
            seq_of=lambda s: s.seq if s is not None else 0,
            tries=CONFLICT_TRIES,
        )
        if decided is None:
            return state
        state, event, rec = decided
        folded = rules.evolve_workspace(state, cast(AnyWorkspaceEvent, event))
        return replace(folded, seq=rec.seq, last_hash=rec.digest)

    async def expire_due(self, now: datetime) -> int:
        """Expire every live session past its TTL or idle timeout at `now`; how many."""
        expired = 0
        for state in self.read_model.sessions():
            if rules.expiry_due(state, now) is None:
                continue

            def decision(current: SessionState) -> AnySessionEvent | None:
                reason = rules.expiry_due(current, now)
                if reason is None:
                    return None
                return rules.expire_session(current, self.stamp("dispatcher"), reason=reason)

            _, rec = await self.change_session(state.account, state.id, decision)
            expired += rec is not None
        return expired
