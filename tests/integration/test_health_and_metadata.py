"""Health, readiness, metrics, the kinds catalogue and the OpenAPI document."""

from __future__ import annotations

import re

import httpx

PRODUCT_KINDS = {
    "sandbox.exec",
    "pipeline.run",
    "browser.action",
    "browser.scrape",
    "github.runner",
    "session.terminate",
    "session.bulk_terminate",
    "workspace.delete",
    "workspace.bulk_delete",
}


def test_health_and_readiness_need_no_key(shared_server):
    health = httpx.get(f"{shared_server.url}/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = httpx.get(f"{shared_server.url}/readyz")
    assert ready.status_code == 200, ready.text


def counter(text: str, name: str, **labels: str) -> float:
    """The value of one sample of a Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(wanted)}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_created_and_finished_jobs(shared_server, tenant, poll):
    assert httpx.get(f"{shared_server.url}/metrics").status_code == 401

    def scrape() -> str:
        response = tenant.http.get("/metrics")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        return response.text

    before = scrape()
    assert "# TYPE chaser_jobs_created_total counter" in before
    created = counter(before, "chaser_jobs_created_total", kind="system.echo")
    finished = counter(before, "chaser_jobs_finished_total", kind="system.echo", status="succeeded")

    job = tenant.echo(message="counted")
    tenant.wait_status(job["id"], "succeeded")

    poll(
        lambda: counter(scrape(), "chaser_jobs_created_total", kind="system.echo") >= created + 1,
        timeout=5,
        what="chaser_jobs_created_total to count the job",
    )
    poll(
        lambda: (
            counter(scrape(), "chaser_jobs_finished_total", kind="system.echo", status="succeeded")
            >= finished + 1
        ),
        timeout=5,
        what="chaser_jobs_finished_total to count the job",
    )
    text = scrape()
    for family in ("chaser_enqueue_to_start_seconds", "chaser_projection_lag_seconds"):
        assert f"# TYPE {family}" in text


def test_kinds_lists_every_product_kind_and_what_runs_here(tenant):
    response = tenant.http.get("/v1/jobs/kinds")
    assert response.status_code == 200, response.text
    kinds = {entry["kind"]: entry for entry in response.json()["kinds"]}
    assert set(kinds) == PRODUCT_KINDS | {"system.echo"}
    assert kinds["system.echo"]["available"] is True
    assert kinds["sandbox.exec"]["available"] is False
    for entry in kinds.values():
        assert entry["description"]
        assert isinstance(entry["input_schema"], dict) and entry["input_schema"]
    assert "command" in str(kinds["sandbox.exec"]["input_schema"])
    assert httpx.get(f"{tenant.server.url}/v1/jobs/kinds").status_code == 401


def test_openapi_document_lists_the_jobs_api(tenant):
    response = tenant.http.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert {"get", "post"} <= set(paths["/v1/jobs"])
    assert "/v1/jobs/kinds" in paths
    assert any(path.startswith("/v1/jobs/{") and path.endswith("/cancel") for path in paths)
    assert any(path.startswith("/v1/jobs/{") and path.endswith("/retry") for path in paths)
