"""How sandbox runs become outcomes, log lines and exit codes (no Docker needed)."""

from __future__ import annotations

import base64
import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from api.logs import encode_line, parse_query
from cli.follow import exit_status, write_chunk
from engine.errors import InvalidInput
from engine.joblogs import LogChunk
from executors.base import Failed, JobContext, StepReport, Succeeded
from executors.sandbox import Placement, exec_outcome
from executors.sandbox_exec import CommandRun
from executors.sandbox_pipeline import StepOutcome, pipeline_outcome, run_steps
from schemas.common import JobStatus, StepStatus
from schemas.kinds import PipelineRunInput, validate_input
from schemas.state import JobState

PLACE = Placement("c1", "chaser-ws.acme.w.x", "busybox:latest", workspace="w")


def finished(code: int, *, out: bytes = b"", timed_out: bool = False) -> CommandRun:
    run = CommandRun(1024)
    run.add("stdout", out)
    run.exit_code = code
    run.timed_out = timed_out
    run.duration_ms = 5
    return run


def test_exec_outcomes() -> None:
    ok = exec_outcome(finished(0, out=b"hi\n"), PLACE)
    assert isinstance(ok, Succeeded)
    assert ok.result["stdout"] == "hi\n" and ok.result["workspace"] == "w"
    assert ok.result["container"] == "chaser-ws.acme.w.x"

    failed = exec_outcome(finished(3), PLACE)
    assert isinstance(failed, Failed) and failed.exit_code == 3 and not failed.retriable
    assert failed.error.code == "command_failed" and failed.result["exit_code"] == 3

    late = exec_outcome(finished(124, timed_out=True), PLACE)
    assert isinstance(late, Failed) and late.error.code == "timed_out"
    assert late.result["timed_out"] is True and late.exit_code == 124


class Recorder:
    """What a pipeline reports through its JobContext."""

    def __init__(self, spec: PipelineRunInput) -> None:
        at = datetime(2030, 1, 1, tzinfo=UTC)
        state = JobState(
            id="job_1",
            account="acme",
            kind="pipeline.run",
            input={},
            status=JobStatus.RUNNING,
            attempt=1,
            max_attempts=1,
            run_at=None,
            idempotency_key=None,
            created_at=at,
            updated_at=at,
        )
        self.steps: list[StepReport] = []
        self.logs: list[tuple[str, bytes]] = []
        self.ctx = JobContext(state, spec, record_step=self.step, write_log=self.log)

    async def step(self, report: StepReport) -> None:
        self.steps.append(report)

    async def log(self, channel: str, data: bytes) -> None:
        self.logs.append((channel, data))


async def test_pipeline_skips_after_the_first_failure_unless_told_to_continue() -> None:
    spec = validate_input(
        "pipeline.run",
        {
            "workspace": "w",
            "env": {"A": "1"},
            "steps": [
                {"command": "ok"},
                {"command": "soft", "continue_on_error": True, "env": {"B": "2"}},
                {"command": "hard", "name": "the hard one"},
                {"command": "never"},
            ],
        },
    )
    assert isinstance(spec, PipelineRunInput)
    codes = {"ok": 0, "soft": 1, "hard": 2}
    seen: list[tuple[str, dict[str, str]]] = []

    async def run_step(command: str, env: dict[str, str], timeout_ms: int | None) -> CommandRun:
        seen.append((command, env))
        return finished(codes[command], out=command.encode())

    recorder = Recorder(spec)
    outcomes = await run_steps(recorder.ctx, spec, run_step)
    assert seen == [("ok", {"A": "1"}), ("soft", {"A": "1", "B": "2"}), ("hard", {"A": "1"})]
    assert [s.status for s in recorder.steps] == [
        StepStatus.SUCCEEDED,
        StepStatus.FAILED,
        StepStatus.FAILED,
        StepStatus.SKIPPED,
    ]
    assert recorder.steps[2].name == "the hard one" and recorder.steps[2].output_tail == "hard"
    assert [c for c, _ in recorder.logs] == ["system"] * 3

    outcome = pipeline_outcome(outcomes, PLACE.describe())
    assert isinstance(outcome, Failed) and outcome.error.code == "step_failed"
    assert outcome.exit_code == 2 and outcome.result["failed_step"] == 2
    assert [s["status"] for s in outcome.result["steps"]] == [
        "succeeded",
        "failed",
        "failed",
        "skipped",
    ]


def test_a_pipeline_whose_failures_all_continue_succeeds() -> None:
    outcomes = [
        StepOutcome(
            index=0, name="a", status=StepStatus.FAILED, exit_code=1, continue_on_error=True
        ),
        StepOutcome(index=1, name="b", status=StepStatus.SUCCEEDED, exit_code=0),
    ]
    outcome = pipeline_outcome(outcomes, {})
    assert isinstance(outcome, Succeeded) and outcome.result["exit_code"] == 0


def test_log_lines_carry_text_or_base64() -> None:
    text = json.loads(encode_line(LogChunk(seq=3, attempt=1, channel="stdout", data=b"hi\n")))
    assert text == {"seq": 3, "attempt": 1, "channel": "stdout", "data": "hi\n"}
    raw = json.loads(encode_line(LogChunk(seq=4, attempt=2, channel="stderr", data=b"\xff\x00")))
    assert base64.b64decode(raw["data_b64"]) == b"\xff\x00" and "data" not in raw


def test_log_queries() -> None:
    query = parse_query({"follow": "true", "channel": "stdout,stderr", "attempt": "2"})
    assert query.follow and query.attempt == 2 and query.channels == {"stdout", "stderr"}
    assert not query.text
    assert parse_query({"format": "text"}).text
    for bad, field in (
        ({"attempt": "0"}, "attempt"),
        ({"follow": "maybe"}, "follow"),
        ({"channel": "stdin"}, "channel"),
        ({"format": "xml"}, "format"),
        ({"tail": "1"}, "tail"),
    ):
        with pytest.raises(InvalidInput) as refused:
            parse_query(bad)
        assert refused.value.field == field


def test_cli_writes_each_channel_to_its_stream() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    write_chunk(b'{"seq":1,"attempt":1,"channel":"stdout","data":"a"}', out, err)
    write_chunk(b'{"seq":2,"attempt":1,"channel":"stderr","data":"b"}', out, err)
    write_chunk(b'{"seq":3,"attempt":1,"channel":"system","data":"c"}', out, err)
    encoded = base64.b64encode(b"\xff").decode()
    write_chunk(json.dumps({"channel": "stdout", "data_b64": encoded}).encode(), out, err)
    assert out.getvalue() == b"a\xff" and err.getvalue() == b"bc"


@pytest.mark.parametrize(
    ("job", "code"),
    [
        ({"status": "succeeded", "result": {"exit_code": 0}}, 0),
        ({"status": "failed", "result": {"exit_code": 7}, "error": {"code": "command_failed"}}, 7),
        ({"status": "failed", "result": {"exit_code": 124}, "error": {"code": "timed_out"}}, 124),
        ({"status": "failed", "result": None, "error": {"code": "image_unavailable"}}, 1),
        ({"status": "cancelled", "result": None, "error": None}, 1),
    ],
)
def test_exit_status_is_the_command_s(job: dict[str, Any], code: int) -> None:
    assert exit_status({"id": "job_1", **job}) == code
