"""A small pool of browsers, launched on first use and replaced when one dies, each keeping a
fresh page (a new browser context) ready so a job does not wait for a renderer to start."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import TypeVar

import structlog

from executors.browser.chromium import Browser
from executors.browser.errors import BrowserError, LaunchFailed
from executors.browser.page import Page
from executors.browser.policy import UrlPolicy
from executors.browser.proxy import EgressProxy, Route

log = structlog.get_logger("chaser.browser")

LAUNCH_TRIES = 2
T = TypeVar("T")


class BrowserPool:
    """Up to `size` Chromium processes sharing one egress proxy."""

    def __init__(
        self,
        binary: str,
        *,
        size: int,
        data_dir: Path,
        policy: UrlPolicy,
        prewarm: bool = True,
    ) -> None:
        self.binary = binary
        self.size = max(size, 1)
        self.data_dir = data_dir
        self.policy = policy
        self.prewarm = prewarm
        self.proxy = EgressProxy(policy)
        self.browsers: list[Browser] = []
        self._default_route: Route | None = None
        self._launching: asyncio.Task[Browser] | None = None
        self._spares: dict[Browser, asyncio.Task[Page]] = {}
        self._launched = 0
        self._stopping = False

    async def page(self) -> Page:
        """A fresh page in a new browser context (a ready spare when there is one)."""
        browser = await self._browser()
        spare = self._spares.pop(browser, None)
        if spare is not None:
            with contextlib.suppress(BrowserError):
                page = await spare
                if page.usable:
                    return self._lend(page)
                await page.close()
        return self._lend(await self._open(browser))

    def _lend(self, page: Page) -> Page:
        page.browser.active += 1
        return page

    async def release(self, page: Page) -> None:
        """Close a page taken with `page()`; start the browser's next spare.

        The spare is made after a job rather than while it runs: starting a renderer keeps
        the browser busy for ~100 ms, which would slow the running job's navigation more
        than it saves the next one.
        """
        browser = page.browser
        browser.active -= 1
        await page.close()
        self._refill(browser)

    def _refill(self, browser: Browser) -> None:
        if self.prewarm and browser.alive and browser not in self._spares and not self._stopping:
            self._spares[browser] = _quiet(asyncio.create_task(self._open(browser)))

    async def _open(self, browser: Browser) -> Page:
        route = await self.proxy.route(f"{browser.name}-ctx")
        try:
            return await Page.open(browser, route, self.policy)
        except BaseException:
            await route.close()
            raise

    async def _browser(self) -> Browser:
        """The least busy live browser; launches the first one (waiting) or more (not)."""
        self.browsers = [b for b in self.browsers if b.alive]
        if len(self.browsers) < self.size and self._launching is None:
            self._launching = _quiet(asyncio.create_task(self._launch()))
        if not self.browsers and self._launching is not None:
            await asyncio.shield(self._launching)
        if not self.browsers:
            raise LaunchFailed("no browser is running")
        return min(self.browsers, key=lambda b: (b.active, self.browsers.index(b)))

    async def _launch(self) -> Browser:
        try:
            for attempt in range(LAUNCH_TRIES):
                try:
                    return await self._launch_once()
                except LaunchFailed as exc:
                    log.warning("browser_launch_failed", attempt=attempt + 1, error=str(exc))
                    if attempt + 1 == LAUNCH_TRIES:
                        raise
            raise AssertionError("unreachable")
        finally:
            self._launching = None

    async def _launch_once(self) -> Browser:
        if self._default_route is None:
            # Jobs never use a browser's default context: its traffic is Chromium's own
            # (update checks and the like), and none of it may leave.
            self._default_route = await self.proxy.route(
                "browser-default", deny="the browser's own traffic is not allowed"
            )
        self._launched += 1
        browser = await Browser.launch(
            self.binary,
            data_dir=self.data_dir,
            proxy_url=self._default_route.url,
            name=f"chromium-{self._launched}",
        )
        browser.on_exit(self._exited)
        self.proxy.reserved_ports.add(browser.port)
        self.browsers.append(browser)
        self._refill(browser)
        return browser

    def _exited(self, browser: Browser) -> None:
        """A browser died: forget it and its spare; launch a replacement."""
        self.proxy.reserved_ports.discard(browser.port)
        with contextlib.suppress(ValueError):
            self.browsers.remove(browser)
        spare = self._spares.pop(browser, None)
        if spare is not None:
            spare.cancel()
        if not self._stopping:
            log.warning("browser_lost", browser=browser.name)
            if self._launching is None:
                self._launching = _quiet(asyncio.create_task(self._launch()))

    async def stop(self) -> None:
        """Close every browser."""
        self._stopping = True
        if self._launching is not None:
            self._launching.cancel()
            with contextlib.suppress(asyncio.CancelledError, BrowserError):
                await self._launching
        for spare in self._spares.values():
            spare.cancel()
        self._spares.clear()
        await asyncio.gather(*(b.close() for b in self.browsers), return_exceptions=True)
        self.browsers.clear()
        if self._default_route is not None:
            await self._default_route.close()


def _quiet(task: asyncio.Task[T]) -> asyncio.Task[T]:
    """A background task whose failure is logged by whoever awaits it, or by nobody."""
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task
