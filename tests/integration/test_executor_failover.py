"""Executors that die mid-job: the lease lapses, the next executor records `executor_lost`, the
engine runs the job again, and it still reaches exactly one terminal state."""

from __future__ import annotations

TERMINAL = ("succeeded", "failed", "cancelled")
TERMINAL_EVENTS = ("JobSucceeded", "JobFailed", "JobCancelled")
# The embedded NATS of a test server is one node; a process joining it must not ask for R3.
# test_process_joins_deployment_by_nats_url_alone shows why this is spelled out here.
SINGLE_NODE = {"CHASER_REPLICAS": "1"}


def test_job_survives_its_executor_being_killed(make_server, start_executor, tenants, embedded_url):
    main = make_server("main", env={"CHASER_ROLES": "api,dispatcher"})
    url = embedded_url(main)
    first = start_executor("executor-1", url, SINGLE_NODE)
    jobs = tenants(server=main)

    job = jobs.echo(message="survivor", sleep_ms=8000)
    running = jobs.wait_status(job["id"], "running", timeout=30)
    assert running["attempt"] == 1

    first.kill()
    start_executor("executor-2", url, SINGLE_NODE)

    done = jobs.wait_status(job["id"], *TERMINAL, timeout=45)
    assert done["status"] == "succeeded"
    assert done["attempt"] == 2  # max_attempts is 1: a lost lease does not count
    assert done["error"] is None
    assert done["result"] == {"message": "survivor", "attempt": 2}

    events = jobs.events(job["id"])
    assert [(e["type"], e["attempt"]) for e in events] == [
        ("JobCreated", 1),
        ("JobStarted", 1),
        ("JobFailed", 1),
        ("JobRetried", 2),
        ("JobStarted", 2),
        ("JobSucceeded", 2),
    ]
    lost = events[2]
    assert lost["error"]["code"] == "executor_lost" and lost["retriable"] is True
    assert events[3]["automatic"] is True
    assert events[1]["executor_id"] != events[4]["executor_id"]
    assert sum(e["type"] == "JobSucceeded" for e in events) == 1
    assert jobs.get(job["id"]) == done


def test_server_crash_mid_job_reruns_it_after_restart(make_server, tenants):
    server = make_server()
    jobs = tenants(server=server)
    job = jobs.echo(message="crash", sleep_ms=3000)
    jobs.wait_status(job["id"], "running")

    server.kill()  # SIGKILL: no shutdown, the lease just lapses
    server.start()

    done = jobs.wait_status(job["id"], *TERMINAL, timeout=45)
    assert done["status"] == "succeeded" and done["attempt"] == 2
    assert done["error"] is None
    events = jobs.events(job["id"])
    assert [e["type"] for e in events if e["type"] in TERMINAL_EVENTS] == [
        "JobFailed",
        "JobSucceeded",
    ]
    assert next(e for e in events if e["type"] == "JobFailed")["error"]["code"] == "executor_lost"


def test_process_joins_deployment_by_nats_url_alone(
    make_server, start_executor, tenants, embedded_url
):
    """`CHASER_NATS_URL` (plus roles) is all a process needs to join a running deployment."""
    main = make_server("main", env={"CHASER_ROLES": "api,dispatcher"})
    start_executor("executor", embedded_url(main))
    jobs = tenants(server=main)
    job = jobs.echo(message="joined")
    done = jobs.wait_status(job["id"], *TERMINAL, timeout=30)
    assert done["status"] == "succeeded"
    assert done["result"] == {"message": "joined", "attempt": 1}
