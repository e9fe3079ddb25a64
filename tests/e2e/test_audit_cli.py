"""Auditors end to end: `chaser audit verify` clean then after tampering, `audit export` then
`replay --from-file` without NATS, `replay` as of a point, `projections rebuild`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.support.server import CHASER, ChaserServer, kill_embedded_nats

TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaserServer]:
    """One server for the clean checks; the tampering test gets its own."""
    srv = ChaserServer(tmp_path_factory.mktemp("audit") / "data")
    try:
        yield srv.start()
    finally:
        srv.stop()
        kill_embedded_nats(srv.data_dir)


class Account:
    """An account with a key on a server, and a few finished jobs in its log."""

    def __init__(self, server: ChaserServer) -> None:
        self.server = server
        self.name = f"audit-{uuid.uuid4().hex[:8]}"
        self.key = server.create_key(self.name)
        self.http = server.client(self.key)

    def job(self, **job_input: Any) -> dict[str, Any]:
        response = self.http.post("/v1/jobs", json={"kind": "system.echo", "input": job_input})
        assert response.status_code == 201, response.text
        return self.finished(response.json()["id"])

    def finished(self, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.http.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in TERMINAL:
                return job
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} did not finish")

    def history(self) -> list[dict[str, Any]]:
        """Three jobs: one succeeded, one failed, one failed then retried and failed again."""
        ok = self.job(message="ok")
        bad = self.job(fail=True)
        again = self.job(fail=True)
        assert self.http.post(f"/v1/jobs/{again['id']}/retry").status_code == 200
        return [ok, bad, self.finished(again["id"])]

    def chaser(self, *args: str, key: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        full = self.server.env()
        if key:
            full["CHASER_API_KEY"] = self.key
        full.update(env)
        return subprocess.run(
            [CHASER, *args], env=full, capture_output=True, text=True, timeout=60, check=False
        )


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.stdout, result.stderr
    return json.loads(result.stdout)


def test_verify_is_clean_against_the_live_read_model_and_a_rebuild(server: ChaserServer) -> None:
    account = Account(server)
    account.history()
    live = account.chaser("audit", "verify", "--account", account.name, "--json")
    assert live.returncode == 0, live.stdout + live.stderr
    report = _json(live)
    assert report["findings"] == [] and report["read_model"] == "live"
    assert report["jobs"] == 3 and report["events"] == 12
    rebuilt = account.chaser("audit", "verify", "--account", account.name, key=False)
    assert rebuilt.returncode == 0, rebuilt.stdout
    assert "OK: the log verifies" in rebuilt.stdout


def test_export_replays_offline_to_the_states_the_api_shows(
    server: ChaserServer, tmp_path: Path
) -> None:
    account = Account(server)
    jobs = {job["id"]: job for job in account.history()}
    export = account.chaser("audit", "export", "--account", account.name)
    assert export.returncode == 0, export.stderr
    path = tmp_path / "export.jsonl"
    path.write_text(export.stdout)
    lines = [json.loads(line) for line in export.stdout.splitlines()]
    assert [line["seq"] for line in lines] == sorted(line["seq"] for line in lines)
    assert len(lines) == 12
    last = jobs[list(jobs)[2]]["finished_at"]
    since = account.chaser("audit", "export", "--account", account.name, "--since", last)
    assert [json.loads(line)["event"]["type"] for line in since.stdout.splitlines()] == [
        "JobFailed"
    ]

    no_nats = {"CHASER_NATS_URL": "nats://127.0.0.1:1", "CHASER_DATA_DIR": str(tmp_path / "none")}
    offline = account.chaser("replay", "--from-file", str(path), "--json", key=False, **no_nats)
    assert offline.returncode == 0, offline.stderr
    replayed = {j["state"]["id"]: j for j in _json(offline)["jobs"]}
    assert {i: j["state"] for i, j in replayed.items()} == jobs
    timeline = [e["type"] for e in replayed[list(jobs)[2]]["timeline"]]
    assert timeline == [
        "JobCreated", "JobStarted", "JobFailed", "JobRetried", "JobStarted", "JobFailed"
    ]  # fmt: skip
    verified = account.chaser(
        "audit", "verify", "--account", account.name, "--from-file", str(path)
    )
    assert verified.returncode == 0, verified.stdout

    text = account.chaser("replay", "--from-file", str(path), "--job", list(jobs)[1], **no_nats)
    assert "JobFailed" in text.stdout and "echo_failed" in text.stdout


def test_replay_as_of_a_sequence_or_a_time(server: ChaserServer) -> None:
    account = Account(server)
    first = account.job(message="first")
    cut = first["seq"]
    middle = account.job(message="second")
    by_seq = _json(account.chaser("replay", "--account", account.name, "--seq", str(cut), "--json"))
    assert [j["state"]["id"] for j in by_seq["jobs"]] == [first["id"]]
    when = first["finished_at"]
    by_time = _json(account.chaser("replay", "--account", account.name, "--until", when, "--json"))
    assert [j["state"]["status"] for j in by_time["jobs"]] == ["succeeded"]
    whole = _json(account.chaser("replay", "--account", account.name, "--state", "--json"))
    assert [j["state"]["id"] for j in whole["jobs"]] == [first["id"], middle["id"]]
    assert all(j["timeline"] is None for j in whole["jobs"])


def test_projections_rebuild_reports_its_speed(server: ChaserServer) -> None:
    account = Account(server)
    account.history()
    result = account.chaser("projections", "rebuild", "--json", "--progress")
    assert result.returncode == 0, result.stderr
    report = _json(result)
    assert report["events"] >= 12 and report["jobs"] >= 3
    assert report["rejected"] == 0 and report["undecodable"] == 0
    assert report["events_per_second"] > 0
    assert "events/s" in result.stderr  # the progress bar


async def _tamper(url: str, stream: str, doomed: int, victim: dict[str, Any]) -> None:
    """Delete one stored event; forge a JobSucceeded onto a failed job; store garbage."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.delete_msg(stream, doomed)
        newest = await js.get_msg(stream, seq=victim["seq"])
        assert newest.subject is not None and newest.data is not None
        forged = {**json.loads(newest.data), "type": "JobSucceeded", "event_id": uuid.uuid4().hex}
        scope = newest.subject.rsplit(".", 1)[0]
        await js.publish(f"{scope}.JobSucceeded", json.dumps(forged).encode())
        await js.publish(f"{scope}.JobStarted", b"not json at all")
    finally:
        await nc.close()


def test_tampering_is_reported_naming_job_and_event(tmp_path: Path) -> None:
    server = ChaserServer(tmp_path / "data").start()
    try:
        account = Account(server)
        ok, bad, _ = account.history()
        with account.http.stream("GET", f"/v1/jobs/{ok['id']}/events") as stream:
            ids = [int(line[4:]) for line in stream.iter_lines() if line.startswith("id: ")]
        started = ids[1]  # the JobStarted of `ok`
        url = json.loads((server.data_dir / "nats.json").read_text())["url"]
        partition = zlib.crc32(account.name.encode()) % int(server.env()["CHASER_PARTITIONS"])
        asyncio.run(_tamper(url, f"CHASER_EVENTS_{partition}", started, bad))

        result = account.chaser("audit", "verify", "--account", account.name, "--json")
        assert result.returncode == 1, result.stdout + result.stderr
        findings = _json(result)["findings"]
        checks = {(f["check"], f.get("id")) for f in findings}
        assert ("gap", None) in checks
        assert ("chain", ok["id"]) in checks  # its JobSucceeded no longer follows its JobCreated
        assert ("chain", bad["id"]) in checks and ("transition", bad["id"]) in checks
        assert ("decode", bad["id"]) in checks
        assert next(f for f in findings if f["check"] == "gap")["seq"] == started
        forged = next(f for f in findings if f["check"] == "transition" and f["id"] == bad["id"])
        assert forged["event_type"] == "JobSucceeded" and forged["event_id"]
        text = account.chaser("audit", "verify", "--account", account.name, key=False)
        assert f"FINDING chain: job {ok['id']}" in text.stdout

        rebuild = account.chaser("projections", "rebuild", "--json")
        assert rebuild.returncode == 1
        assert _json(rebuild)["undecodable"] == 1 and _json(rebuild)["rejected"] >= 1
    finally:
        server.stop()
        kill_embedded_nats(server.data_dir)


def test_verify_needs_an_account() -> None:
    result = subprocess.run(
        [CHASER, "audit", "verify"], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2 and "--account" in result.stderr
