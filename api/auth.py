"""Authentication: the bearer key and the account it acts for."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request
from litestar.datastructures import State

from api.problems import ApiProblem
from engine.accounts import KeyRing


class Principal(msgspec.Struct, frozen=True):
    """The caller: the account it acts for and the key it used."""

    account: str
    key_id: str

    @property
    def actor(self) -> str:
        """How the caller is named in events."""
        return f"key:{self.key_id}"


async def principal(request: Request[Any, Any, Any], state: State) -> Principal:
    """Authenticate the bearer key and pick the account (`X-Chaser-Account`)."""
    keys: KeyRing = state.deps.keys
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiProblem(401, "Unauthorized", "send `Authorization: Bearer <key>`")
    key = await keys.verify(token.strip())
    if key is None:
        raise ApiProblem(401, "Unauthorized", "unknown or revoked API key")
    wanted = request.headers.get("x-chaser-account")
    if wanted is None:
        if len(key.accounts) != 1:
            raise ApiProblem(
                400,
                "Account required",
                "this key belongs to several accounts; choose one with X-Chaser-Account",
                field="X-Chaser-Account",
            )
        return Principal(key.accounts[0], key.id)
    if wanted not in key.accounts:
        raise ApiProblem(403, "Forbidden", f"this key is not a member of account {wanted!r}")
    return Principal(wanted, key.id)
