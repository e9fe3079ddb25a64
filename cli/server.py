"""`chaser serve`: the composition root. Wires NATS, the store, the read model, the dispatcher,
executor pools and the HTTP API, then shuts them down in order on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import nats.errors
import nats.js.errors
import structlog
import uvicorn
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from api.app import ApiDeps, create_app
from api.runners import runner_routes
from cli.subscribers import Subscribers
from engine.accounts import KeyRing, account_limits
from engine.aggregates import SessionService
from engine.artifacts import ArtifactStore
from engine.auditlog import bulk_catch_up
from engine.dispatcher import Dispatcher
from engine.embedded import EmbeddedNats
from engine.errors import EngineError
from engine.jetstream import JetStreamEventStore, bootstrap, connect
from engine.joblogs import JobLogs
from engine.logread import LogReader
from engine.metrics import Metrics
from engine.projection import ReadModel
from engine.registry import ExecutorRegistry, presence_bucket
from engine.runners import RunnerBoard, runners_bucket
from engine.sandbox import check_input as check_sandbox_input
from engine.service import JobService
from engine.settings import Settings
from engine.subjects import stream_name
from engine.vault import SecretVault
from engine.workqueue import JetStreamWorkQueue
from executors.base import Executor
from executors.browser import browser_executor
from executors.echo import EchoExecutor
from executors.errors import BackendUnavailable
from executors.github.executor import GithubExecutor
from executors.lifecycle import LifecycleExecutor
from executors.runtime import ExecutorPool
from executors.sandbox import SandboxExecutor
from executors.sandbox_sessions import record_workspace
from executors.workspace_files import WorkspaceFiles
from executors.workspaces import DockerWorkspaces

log = structlog.get_logger("chaser.serve")

LIMITS_REFRESH = 2.0


def executor_factories() -> dict[str, Callable[[Settings], Executor]]:
    """Executor families this build can run, by name."""
    return {
        "system": lambda _settings: EchoExecutor(),
        "lifecycle": lambda _settings: LifecycleExecutor(DockerWorkspaces()),
        "sandbox": SandboxExecutor,
        "browser": browser_executor,
        "github": GithubExecutor,
    }


def _bound(
    executor: Executor,
    sessions: SessionService,
    js: JetStreamContext | None = None,
    replicas: int = 1,
) -> Executor:
    """Give an executor that asks for it the session service (`bind_sessions`) and the
    JetStream context (`bind_jetstream`)."""
    bind = getattr(executor, "bind_sessions", None)
    if callable(bind):
        bind(sessions)
    bind_js = getattr(executor, "bind_jetstream", None)
    if callable(bind_js) and js is not None:
        bind_js(js, replicas)
    return executor


SESSION_SWEEP_SECONDS = 1.0


async def expire_sessions(sessions: SessionService) -> None:
    """Append SessionExpired for live sessions past their TTL or idle timeout, every second."""
    while True:
        await asyncio.sleep(SESSION_SWEEP_SECONDS)
        with contextlib.suppress(EngineError):
            await sessions.expire_due(datetime.now(UTC))


class Engine:
    """Every component of one `chaser serve` process, started and stopped in order."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: EmbeddedNats | None = None
        self.nc: NATS | None = None
        self.pools: list[ExecutorPool] = []
        self.dispatcher: Dispatcher | None = None
        self.read_model: ReadModel | None = None
        self.subscribers: Subscribers | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.url = ""
        self.workspaces = DockerWorkspaces()
        self.files = WorkspaceFiles(settings.default_image)

    async def start(self) -> ApiDeps:
        """Start NATS (embedded or joined), bootstrap streams, and every role asked for."""
        settings = self.settings
        url = settings.nats_url
        if url is None:
            self.embedded = EmbeddedNats(settings.data_dir)
            url = await self.embedded.start()
        self.url = url
        self.nc = await connect(url, name="chaser-serve")
        js = self.nc.jetstream()
        boot = await bootstrap(js, settings)
        store = JetStreamEventStore(js, boot.partitions)
        self.read_model = ReadModel(store)
        self.subscribers = Subscribers(js, self.read_model, settings, boot.partitions)
        service = JobService(
            store,
            self.read_model,
            read_wait=settings.read_wait_seconds,
            check_input=lambda kind, spec: check_sandbox_input(settings, kind, spec),
            seal_input=SecretVault(
                js, replicas=settings.effective_replicas, max_age_days=settings.event_max_age_days
            ).seal,
        )
        sessions = SessionService(service, js)
        presence = await presence_bucket(js, settings.effective_replicas)
        registry = ExecutorRegistry(presence)
        metrics = Metrics()
        self.read_model.listen(metrics.on_event)
        roles = settings.roles
        if "dispatcher" in roles:
            self.dispatcher = Dispatcher(
                service,
                JetStreamWorkQueue(js),
                default_limit=settings.account_concurrency,
                limits=await account_limits(js),
                available=registry.available,
            )
        await self.read_model.start(bulk_catch_up(LogReader(js)))
        await self.subscribers.start()
        if self.dispatcher is not None:
            await self.dispatcher.start()
            self._tasks.append(asyncio.create_task(self._watch_limits(js)))
            self._tasks.append(asyncio.create_task(expire_sessions(sessions)))
        self._tasks.append(asyncio.create_task(self._watch_registry(registry)))
        if "executor" in roles:
            await self._start_pools(js, sessions, registry, presence)
            if self.dispatcher is not None:
                self.dispatcher.kick()
        await self.read_model.wait_ready()
        metrics.live = True
        log.info("engine_ready", nats=url, partitions=boot.partitions, roles=sorted(roles))
        return ApiDeps(
            service=service,
            keys=KeyRing(js),
            registry=registry,
            metrics=metrics,
            ready=lambda: self._ready(js, boot.partitions),
            queue_depth=self.dispatcher.backlog_depth if self.dispatcher else dict,
            sessions=sessions,
            workspace_sizes=self.workspaces.sizes,
            logs=JobLogs(js),
            extra_routes=[
                *self.subscribers.routes(),
                runner_routes(
                    RunnerBoard(await runners_bucket(js, settings.effective_replicas)).live,
                    self.files,
                    lambda account, name: record_workspace(
                        sessions, account, name, actor="api", job_id=None
                    ),
                ),
            ],
            artifacts=ArtifactStore(
                js,
                replicas=settings.effective_replicas,
                max_age_days=settings.event_max_age_days,
            ),
        )

    async def _start_pools(
        self,
        js: JetStreamContext,
        sessions: SessionService,
        registry: ExecutorRegistry,
        presence: KeyValue,
    ) -> None:
        assert self.nc is not None
        factories = executor_factories()
        for family in sorted(self.settings.executor_families):
            if family not in factories:
                log.warning("executor_family_unknown", family=family)
                continue
            pool = ExecutorPool(
                self.nc,
                js,
                sessions.jobs,
                _bound(
                    factories[family](self.settings), sessions, js, self.settings.effective_replicas
                ),
                concurrency=self.settings.executor_concurrency,
                lease_seconds=self.settings.lease_seconds,
                presence=presence,
                sessions=sessions,
            )
            try:
                await pool.start()
            except BackendUnavailable as exc:
                # A deployment without Docker (or Chromium) still starts, without the family.
                log.warning("executor_family_unavailable", family=family, reason=str(exc))
                continue
            registry.mark_local(family)
            self.pools.append(pool)

    async def _watch_registry(self, registry: ExecutorRegistry) -> None:
        changed = asyncio.Event()
        runner = asyncio.create_task(registry.run(changed))
        try:
            while True:
                await changed.wait()
                changed.clear()
                if self.dispatcher is not None:
                    self.dispatcher.kick()
        finally:
            runner.cancel()

    async def _watch_limits(self, js: JetStreamContext) -> None:
        assert self.dispatcher is not None
        while True:
            await asyncio.sleep(LIMITS_REFRESH)
            with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
                limits = await account_limits(js)
                if limits != self.dispatcher.limits:
                    self.dispatcher.limits = limits
                    self.dispatcher.kick()

    async def _ready(self, js: JetStreamContext, partitions: int) -> str | None:
        if self.nc is None or not self.nc.is_connected:
            return "not connected to NATS"
        try:
            for p in range(partitions):
                await js.stream_info(stream_name(p))
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            return f"event streams unavailable: {exc!r}"
        if self.read_model is None or not self.read_model.ready:
            return "read model still catching up"
        return None

    async def stop(self) -> None:
        """Stop taking work, hand back or finish running work, then close everything."""
        for pool in self.pools:
            await pool.stop(self.settings.shutdown_grace_seconds)
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        if self.subscribers is not None:
            await self.subscribers.stop()
        for task in self._tasks:
            task.cancel()
        if self.read_model is not None:
            await self.read_model.stop()
        await self.workspaces.close()
        await self.files.close()
        if self.nc is not None:
            # Every component has stopped and every append was acknowledged: close, do not
            # drain (a drain waits on subscriptions already gone and can stall for 30 s).
            with contextlib.suppress(nats.errors.Error):
                await self.nc.close()
        if self.embedded is not None:
            await self.embedded.stop()
        log.info("engine_stopped")


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the engine owns SIGTERM and shuts down in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    engine = Engine(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        deps = await engine.start()
        server: uvicorn.Server | None = None
        if "api" in settings.roles:
            app = create_app(deps, max_body_bytes=settings.max_body_bytes)
            config = uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                log_config=None,
                access_log=False,
                lifespan="off",
            )
            server = _QuietServer(config)
            api_task = asyncio.create_task(server.serve())
            log.info("api_listening", url=f"http://{settings.host}:{settings.port}")
        await stop.wait()
        log.info("shutdown_requested")
        if engine.subscribers is not None:
            engine.subscribers.close_feeds()  # live streams never end by themselves
        if server is not None:
            server.should_exit = True
            await api_task
    finally:
        await engine.stop()
