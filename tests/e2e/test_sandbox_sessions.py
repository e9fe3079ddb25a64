"""Sandbox sessions on real Docker: a live container that jobs run in, one per workspace,
ended by `session.terminate`, after which its use fails with `session_not_found`."""

from __future__ import annotations

from typing import Any

from tests.support.sandbox import (
    TEST_IMAGE,
    Sandbox,
    containers,
    docker,
    requires_docker,
    sandbox,
    sandbox_server,
    wait_until,
)

__all__ = ["sandbox", "sandbox_server"]  # fixtures used by name
pytestmark = requires_docker


def open_session(sandbox: Sandbox, **body: Any) -> Any:
    """POST /v1/sessions, then wait until the session is open (or has failed)."""
    response = sandbox.http.post("/v1/sessions", json={"type": "sandbox", **body})
    assert response.status_code == 201, response.text
    session_id = response.json()["id"]

    def settled() -> Any:
        state = sandbox.http.get(f"/v1/sessions/{session_id}").json()
        return state if state["status"] != "opening" else None

    return wait_until(settled, timeout=30, what=f"session {session_id} to open")


def test_jobs_run_in_a_workspace_session_and_fail_once_it_is_terminated(
    sandbox: Sandbox,
) -> None:
    session = open_session(sandbox, workspace="live", ttl_seconds=600)
    assert session["status"] == "open", session
    name = session["resource"]["container"]
    assert name == f"chaser-ses.{sandbox.account}.{session['id']}"
    running = containers(f"org.chaser.session={session['id']}")
    assert [c["state"] for c in running] == ["running"]

    first = sandbox.run(session_id=session["id"], command="echo up > /tmp/marker; echo f > f")
    assert first["status"] == "succeeded", first
    assert first["result"]["session_id"] == session["id"]
    assert first["result"]["workspace"] == "live" and first["result"]["container"] == name
    # A workspace job without session_id runs in the workspace's live session too.
    second = sandbox.run(workspace="live", command="cat /tmp/marker f")
    assert second["result"]["stdout"] == "up\nf\n"
    assert second["result"]["session_id"] == session["id"]
    pipeline = sandbox.run("pipeline.run", workspace="live", steps=[{"command": "cat f"}])
    assert pipeline["status"] == "succeeded" and pipeline["result"]["session_id"] == session["id"]

    used = [e for e in sandbox.events(session["id"], "session") if e["type"] == "SessionUsed"]
    assert [e["job_id"] for e in used] == [first["id"], second["id"], pipeline["id"]]
    assert sandbox.http.get(f"/v1/sessions/{session['id']}").json()["jobs"] == 3

    rival = open_session(sandbox, workspace="live")
    assert rival["status"] == "failed" and session["id"] in rival["end_reason"]

    ended = sandbox.run("session.terminate", session_id=session["id"])
    assert ended["status"] == "succeeded", ended
    wait_until(
        lambda: not containers(f"org.chaser.session={session['id']}"),
        timeout=10,
        what="the session's container to be removed",
    )
    late = sandbox.run(session_id=session["id"], command="true")
    assert late["status"] == "failed"
    assert late["error"]["code"] == "session_not_found"
    # The workspace outlives its session: its files are still there for the next job.
    assert sandbox.run(workspace="live", command="cat f")["result"]["stdout"] == "f\n"


def test_an_ephemeral_session_keeps_its_processes_between_jobs(sandbox: Sandbox) -> None:
    session = open_session(sandbox, ephemeral=True, image=TEST_IMAGE, options={"memory_mb": 64})
    assert session["status"] == "open", session
    started = sandbox.run(session_id=session["id"], command="sleep 300 >/dev/null 2>&1 &")
    assert started["status"] == "succeeded", started
    seen = sandbox.run(session_id=session["id"], command="ps | grep -c '[s]leep 300'")
    assert seen["result"]["stdout"].strip() == "1"
    assert seen["result"]["workspace"] is None
    box = containers(f"org.chaser.session={session['id']}")[0]
    memory = docker("inspect", "--format", "{{.HostConfig.Memory}}", box["id"]).stdout
    assert int(memory) == 64 * 1024 * 1024
    assert sandbox.run("session.terminate", session_id=session["id"])["status"] == "succeeded"


def test_a_session_with_a_bad_option_fails_to_open(sandbox: Sandbox) -> None:
    session = open_session(sandbox, workspace="opts", options={"memory_mb": 10_000_000})
    assert session["status"] == "failed"
    assert "options.memory_mb" in session["end_reason"]
