"""Malformed requests are refused with problem+json naming the field, and append nothing."""

from __future__ import annotations

import base64
import json

import pytest

PROBLEM = "application/problem+json"
MIB = 1024 * 1024

BAD_CREATES = [
    pytest.param({"kind": "no.such.kind", "input": {}}, 422, "kind", id="unknown-kind"),
    pytest.param({"input": {"message": "x"}}, 422, "kind", id="missing-kind"),
    pytest.param({"kind": "", "input": {}}, 422, "kind", id="empty-kind"),
    pytest.param(
        {"kind": "system.echo", "input": {"message": "x", "bogus": 1}},
        422,
        "input.bogus",
        id="unknown-input-field",
    ),
    pytest.param(
        {"kind": "sandbox.exec", "input": {"workspace": "w"}},
        422,
        "input.command",
        id="missing-required-input-field",
    ),
    pytest.param(
        {"kind": "system.echo", "input": {"sleep_ms": "long"}},
        422,
        "input.sleep_ms",
        id="input-field-of-wrong-type",
    ),
    pytest.param({"kind": "system.echo", "input": "text"}, 422, "input", id="input-not-object"),
    pytest.param(
        {"kind": "system.echo", "run_at": "next tuesday"}, 422, "run_at", id="malformed-run-at"
    ),
    pytest.param(
        {"kind": "system.echo", "run_at": "2030-01-01T10:00:00"},
        422,
        "run_at",
        id="run-at-without-offset",
    ),
    pytest.param({"kind": "system.echo", "max_attempts": 0}, 422, "max_attempts", id="attempts-0"),
    pytest.param(
        {"kind": "system.echo", "backoff_ms": -1}, 422, "backoff_ms", id="negative-backoff"
    ),
    pytest.param(
        {"kind": "system.echo", "idempotency_key": ""}, 422, "idempotency_key", id="empty-key"
    ),
    pytest.param({"kind": "system.echo", "surprise": True}, 422, "surprise", id="unknown-field"),
]

BAD_LISTS = [
    pytest.param({"cursor": "not-a-cursor!"}, "cursor", id="garbage-cursor"),
    pytest.param(
        {"cursor": base64.urlsafe_b64encode(b'{"p": 1}').decode()}, "cursor", id="foreign-cursor"
    ),
    pytest.param(
        {"cursor": base64.urlsafe_b64encode(b"[-5]").decode().rstrip("=")},
        "cursor",
        id="negative-cursor",
    ),
    pytest.param({"limit": "0"}, "limit", id="limit-0"),
    pytest.param({"limit": "-1"}, "limit", id="limit-negative"),
    pytest.param({"limit": "ten"}, "limit", id="limit-not-a-number"),
    pytest.param({"limit": "100000"}, "limit", id="limit-too-large"),
    pytest.param({"status": "done"}, "status", id="unknown-status"),
    pytest.param({"status": "queued,nope"}, "status", id="one-unknown-status"),
    pytest.param({"created_after": "yesterday"}, "created_after", id="bad-created-after"),
    pytest.param({"created_before": "2030-13-01T00:00:00Z"}, "created_before", id="bad-before"),
    pytest.param({"colour": "blue"}, "colour", id="unknown-parameter"),
]


@pytest.fixture(scope="module")
def account(module_tenant):
    """The module's account, with one job in it so a count of zero proves nothing."""
    module_tenant.create(input={"message": "baseline"})
    return module_tenant


def assert_problem(response, status: int, field: str | None = None):
    """The response is a problem+json of `status` (naming `field` when given)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if field is not None:
        assert body["field"] == field, body
    return body


def counts(account):
    """How many jobs the account lists, and how many events its streams hold."""
    return len(account.all()), account.event_count()


@pytest.mark.parametrize(("body", "status", "field"), BAD_CREATES)
def test_bad_create_is_refused_and_appends_nothing(account, body, status, field):
    before = counts(account)
    assert_problem(account.http.post("/v1/jobs", json=body), status, field)
    assert counts(account) == before


def test_unknown_kind_names_the_kinds_endpoint(account):
    body = assert_problem(
        account.http.post("/v1/jobs", json={"kind": "nope", "input": {}}), 422, "kind"
    )
    assert "nope" in body["detail"]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"{not json", id="malformed"),
        pytest.param(b'{"kind": "system.echo",', id="truncated"),
        pytest.param(b"\xff\xfe", id="binary"),
    ],
)
def test_body_that_is_not_json_is_a_bad_request(account, content):
    before = counts(account)
    response = account.http.post(
        "/v1/jobs", content=content, headers={"content-type": "application/json"}
    )
    assert_problem(response, 400)
    assert counts(account) == before


def test_oversized_body_is_refused(account):
    before = counts(account)
    body = json.dumps({"kind": "system.echo", "input": {"message": "x" * MIB}}).encode()
    assert len(body) > MIB
    response = account.http.post(
        "/v1/jobs", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413)
    assert counts(account) == before


@pytest.mark.parametrize(("params", "field"), BAD_LISTS)
def test_bad_list_query_is_refused(account, params, field):
    response = account.http.get("/v1/jobs", params=params)
    assert_problem(response, 422, field)


def test_limits_at_the_edges_are_accepted(account):
    assert len(account.list(limit=1)["items"]) == 1
    assert account.list(limit=500)["next_cursor"] is None


@pytest.mark.parametrize("bad", ["Bad Account!", "UPPER", "", "a.b", "x" * 64, "a b"])
def test_cli_refuses_account_ids_that_are_not_subject_safe(shared_server, bad):
    result = shared_server.cli("keys", "create", "--account", bad, "--json", check=False)
    assert result.returncode != 0
    message = result.stderr + result.stdout
    assert "account" in message and "lower-case" in message, message
    assert "Traceback" not in message
    keys = json.loads(shared_server.cli("keys", "list", "--json").stdout)
    assert all(bad not in key["accounts"] for key in keys)
