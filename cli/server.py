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
from engine.accounts import KeyRing, account_limits
from engine.aggregates import SessionService
from engine.dispatcher import Dispatcher
from engine.embedded import EmbeddedNats
from engine.errors import EngineError
from engine.jetstream import JetStreamEventStore, bootstrap, connect
from engine.metrics import Metrics
from engine.projection import ReadModel
from engine.registry import ExecutorRegistry, presence_bucket
from engine.service import JobService
from engine.settings import Settings
from engine.subjects import stream_name
from engine.workqueue import JetStreamWorkQueue
from executors.base import Executor
from executors.echo import EchoExecutor
from executors.lifecycle import LifecycleExecutor
from executors.runtime import ExecutorPool

log = structlog.get_logger("chaser.serve")

LIMITS_REFRESH = 2.0


def executor_factories() -> dict[str, Callable[[Settings], Executor]]:
    """Executor families this build can run, by name."""
    return {
        "system": lambda _settings: EchoExecutor(),
        "lifecycle": lambda _settings: LifecycleExecutor(),
    }


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
        self._tasks: list[asyncio.Task[None]] = []
        self.url = ""

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
        service = JobService(store, self.read_model, read_wait=settings.read_wait_seconds)
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
        await self.read_model.start()
        if self.dispatcher is not None:
            await self.dispatcher.start()
            self._tasks.append(asyncio.create_task(self._watch_limits(js)))
            self._tasks.append(asyncio.create_task(expire_sessions(sessions)))
        self._tasks.append(asyncio.create_task(self._watch_registry(registry)))
        if "executor" in roles:
            await self._start_pools(js, sessions, registry, presence)
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
                factories[family](self.settings),
                concurrency=self.settings.executor_concurrency,
                lease_seconds=self.settings.lease_seconds,
                presence=presence,
                sessions=sessions,
            )
            await pool.start()
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
        for task in self._tasks:
            task.cancel()
        if self.read_model is not None:
            await self.read_model.stop()
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
        if server is not None:
            server.should_exit = True
            await api_task
    finally:
        await engine.stop()
