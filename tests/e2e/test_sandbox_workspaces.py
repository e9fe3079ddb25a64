"""Workspace lifecycle on real Docker: `workspace.delete` and `workspace.bulk_delete` remove
the volume and its record, wait for a running job, refuse while a live session holds it."""

from __future__ import annotations

from tests.support.sandbox import (
    Sandbox,
    containers,
    parse_time,
    requires_docker,
    sandbox,
    sandbox_server,
    wait_until,
)

__all__ = ["sandbox", "sandbox_server"]  # fixtures used by name
pytestmark = requires_docker


def names(sandbox: Sandbox) -> list[str]:
    """The account's workspaces as `GET /v1/workspaces` lists them."""
    return [w["name"] for w in sandbox.http.get("/v1/workspaces").json()["items"]]


def test_delete_removes_the_volume_and_the_record(sandbox: Sandbox) -> None:
    assert sandbox.run(workspace="doomed", command="echo x > f")["status"] == "succeeded"
    assert names(sandbox) == ["doomed"]

    deleted = sandbox.run("workspace.delete", workspace="doomed")
    assert deleted["status"] == "succeeded", deleted
    assert deleted["result"] == {"workspace": "doomed", "deleted": True}
    assert sandbox.volumes() == []
    assert names(sandbox) == []
    assert not containers(f"org.chaser.account={sandbox.account}", "org.chaser.workspace=doomed")
    types = [e["type"] for e in sandbox.events("doomed", "workspace")]
    assert types == ["WorkspaceCreated", "WorkspaceDeleted"]

    again = sandbox.run(workspace="doomed", command="ls")
    assert again["status"] == "succeeded" and again["result"]["stdout"] == ""
    assert names(sandbox) == ["doomed"]
    missing = sandbox.run("workspace.delete", workspace="never-made")
    assert missing["status"] == "failed" and missing["error"]["code"] == "workspace_not_found"


def test_delete_waits_for_the_running_job(sandbox: Sandbox) -> None:
    busy = sandbox.create("sandbox.exec", {"workspace": "busy", "command": "sleep 1.5; echo ok"})
    sandbox.wait(busy["id"], "running")
    delete = sandbox.create("workspace.delete", {"workspace": "busy"})
    finished = sandbox.wait(busy["id"])
    assert finished["status"] == "succeeded" and finished["result"]["stdout"] == "ok\n"
    deleted = sandbox.wait(delete["id"])
    assert deleted["status"] == "succeeded", deleted
    assert parse_time(deleted["started_at"]) >= parse_time(finished["finished_at"])
    assert sandbox.volumes() == []


def test_bulk_delete_reports_each_workspace(sandbox: Sandbox) -> None:
    for name in ("a", "b", "c"):
        assert sandbox.run(workspace=name, command="true")["status"] == "succeeded"
    listed = sandbox.run("workspace.bulk_delete", workspaces=["a", "b", "ghost"])
    assert listed["status"] == "succeeded", listed
    assert listed["result"] == {"deleted": ["a", "b"], "not_found": ["ghost"], "failed": []}
    assert names(sandbox) == ["c"]
    everything = sandbox.run("workspace.bulk_delete", all=True)
    assert everything["result"]["deleted"] == ["c"]
    assert sandbox.volumes() == []


def test_a_workspace_held_by_a_live_session_is_not_deleted(sandbox: Sandbox) -> None:
    response = sandbox.http.post("/v1/sessions", json={"type": "sandbox", "workspace": "held"})
    session_id = response.json()["id"]
    wait_until(
        lambda: sandbox.http.get(f"/v1/sessions/{session_id}").json()["status"] == "open",
        what="the session to open",
    )
    refused = sandbox.run("workspace.delete", workspace="held")
    assert refused["status"] == "failed" and refused["error"]["code"] == "workspace_busy"
    assert session_id in refused["error"]["message"]
    assert sandbox.volumes() == [f"chaser.{sandbox.account}.held"]
    assert sandbox.run("session.terminate", session_id=session_id)["status"] == "succeeded"
    wait_until(lambda: not containers(f"org.chaser.session={session_id}"), what="container gone")
    assert sandbox.run("workspace.delete", workspace="held")["status"] == "succeeded"
