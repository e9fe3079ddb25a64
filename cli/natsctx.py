"""Finding the deployment's NATS from the command line: CHASER_NATS_URL, or the embedded server
of CHASER_DATA_DIR (started for the duration of the command when it is not running)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from nats.js import JetStreamContext

from engine.embedded import EmbeddedNats, reachable, read_info
from engine.jetstream import bootstrap, connect
from engine.settings import Settings


@asynccontextmanager
async def deployment(settings: Settings) -> AsyncIterator[JetStreamContext]:
    """A JetStream context on the deployment, bootstrapped."""
    embedded: EmbeddedNats | None = None
    url = settings.nats_url
    if url is None:
        info = read_info(settings.data_dir)
        if info is not None and reachable(info.port):
            url = info.url
        else:
            embedded = EmbeddedNats(settings.data_dir)
            url = await embedded.start()
    nc = await connect(url, name="chaser-cli")
    try:
        js = nc.jetstream()
        await bootstrap(js, settings)
        yield js
    finally:
        await nc.drain()
        if embedded is not None:
            await embedded.stop()
