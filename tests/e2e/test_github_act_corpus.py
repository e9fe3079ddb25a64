"""nektos/act's own workflow test cases (../shared/corpus/act), run through the API with
`chaser runner run-workflow`, compared with the outcomes act's tests expect.

Each case's directory is uploaded as a workspace; each of its workflow files runs with the
case's event, payload, secrets, env, inputs and matrix filter, restricted to the jobs that
run offline. Like act, the run supplies act's defaults: actor and repository `nektos/act`
and the run-level env `ACT=true`. Runner label sets map `ubuntu-latest` and `self-hosted`
(act's platforms) and the legacy labels of the `matrix` cases to the local runner image.
Cases run concurrently; each case is then a test of its own.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support.github import GithubAccount, github_server_fixture
from tests.support.sandbox import requires_docker, stop_server
from tests.support.server import ChaserServer

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "act"
CASES: list[dict[str, Any]] = (
    json.loads((CORPUS / "cases.json").read_text()) if (CORPUS / "cases.json").exists() else []
)
PARALLEL = 6
pytestmark = [
    requires_docker,
    pytest.mark.skipif(not CASES, reason=f"the act corpus is not at {CORPUS}"),
]


def _workspace(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)[:100]


def _flags(case: dict[str, Any], payload_dir: Path) -> list[str]:
    flags = ["--event", case["event"], "--actor", "nektos/act", "--repository", "nektos/act"]
    flags += ["--env", "ACT=true"]
    for option, values in (
        ("--secret", case["secrets"]),
        ("--env", case["env"]),
        ("--input", case["inputs"]),
    ):
        for key, value in (values or {}).items():
            flags += [option, f"{key}={value}"]
    if case.get("event_payload"):
        flags += ["--event-payload", str(CORPUS / "cases" / case["name"] / case["event_payload"])]
    elif case.get("event_payload_inline"):
        inline = payload_dir / f"{case['name']}.json"
        inline.write_text(json.dumps(case["event_payload_inline"]))
        flags += ["--event-payload", str(inline)]
    for key, values in (case.get("matrix_filter") or {}).items():
        for value in values:
            flags += ["--matrix", f"{key}={value}"]
    if case.get("partial_offline"):
        for job in case["offline_jobs"]:
            flags += ["--job", job]
    return flags


def run_case(account: GithubAccount, case: dict[str, Any], payload_dir: Path) -> dict[str, Any]:
    """Run every workflow file of a case; the outcome, per-job results and diagnostics."""
    workspace = _workspace(case["name"])
    account.upload(workspace, CORPUS / "cases" / case["name"])
    outcome, jobs, notes = "success", {}, []
    for path in case["workflow_files"]:
        code, body, stderr = account.run_workflow(path, workspace, *_flags(case, payload_dir))
        if code != 0:
            outcome = "failure"
        if stderr.strip():
            notes.append(stderr.strip()[-600:])
        for row in body.get("jobs", []):
            job = row["job"].split("/")[0]
            result = row["conclusion"]
            if jobs.get(job) not in ("failure", "cancelled"):
                jobs[job] = result
            if row.get("error"):
                notes.append(f"{row['job']}: {row['error']}")
    return {"outcome": outcome, "jobs": jobs, "notes": notes}


@pytest.fixture(scope="module")
def github_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaserServer]:
    """One server for the whole corpus."""
    yield from github_server_fixture(tmp_path_factory)


@pytest.fixture(scope="module")
def outcomes(github_server: ChaserServer) -> Iterator[dict[str, dict[str, Any]]]:
    """Every case, run concurrently once for the module."""
    account = GithubAccount(github_server)
    with tempfile.TemporaryDirectory() as payloads, ThreadPoolExecutor(PARALLEL) as pool:
        futures = {c["name"]: pool.submit(run_case, account, c, Path(payloads)) for c in CASES}
        results = {}
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except Exception as exc:  # a broken case must not hide the others
                results[name] = {"outcome": "error", "jobs": {}, "notes": [repr(exc)]}
    report = os.environ.get("CHASER_ACT_REPORT")
    if report:
        Path(report).write_text(json.dumps(results, indent=1, sort_keys=True))
    try:
        yield results
    finally:
        account.cleanup()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_act_case(case: dict[str, Any], outcomes: dict[str, dict[str, Any]]) -> None:
    found = outcomes[case["name"]]
    detail = f"{case['name']}: {found}\nnotes: {case['notes']}"
    assert found["outcome"] == case["expect"], detail
    expected = case.get("expected_job_results") or {}
    for job, result in expected.items():
        if job in found["jobs"] and job in case["offline_jobs"]:
            assert found["jobs"][job] == result, detail


def test_corpus_is_whole() -> None:
    assert len(CASES) == 67


__all__ = ["stop_server"]
