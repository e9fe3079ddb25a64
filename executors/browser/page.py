"""One page in a browser context of its own: open, navigate under the URL policy, evaluate,
capture, close. Its DevTools connection is its own too, so a huge answer or a crash of this
page never touches another job's."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple

import structlog

from executors.browser.cdp import CdpConnection, Params
from executors.browser.chromium import Browser
from executors.browser.errors import (
    BrowserError,
    BrowserLost,
    CdpClosed,
    NavigationFailed,
    PageCrashed,
    ResultTooLarge,
    ScriptFailed,
    UrlNotAllowed,
)
from executors.browser.limits import MAX_MESSAGE_BYTES
from executors.browser.policy import UrlPolicy, destination
from executors.browser.proxy import Note, Route

log = structlog.get_logger("chaser.browser")

LIFECYCLE = {"load": "load", "domcontentloaded": "DOMContentLoaded", "networkidle": "networkIdle"}
VIEWPORT = {"width": 1280, "height": 800}
CLOSE_TIMEOUT = 1.0
KEEP_LOADERS = 8
LOST_GRACE = 0.5


class Navigation(NamedTuple):
    """A committed main-frame navigation."""

    loader_id: str | None
    status: int | None


def exception_text(details: Params) -> str:
    """A readable message from Runtime exceptionDetails. Pure."""
    exc = details.get("exception") or {}
    text = exc.get("description") or exc.get("value") or details.get("text") or "exception"
    return str(text)[:2000]


class Page:
    """A page target in its own browser context, with its own egress route."""

    def __init__(
        self,
        browser: Browser,
        *,
        context_id: str,
        target_id: str,
        conn: CdpConnection,
        route: Route,
        policy: UrlPolicy,
    ) -> None:
        self.browser = browser
        self.context_id = context_id
        self.target_id = target_id
        self.conn = conn
        self.route = route
        self.policy = policy
        self.url = "about:blank"
        self.crashed = False
        self.closed = False
        self.refused: Note | None = None
        self._docs: dict[str, str] = {}
        self._lifecycle: dict[str, set[str]] = {}
        self._status: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        conn.on("Page.lifecycleEvent", self._on_lifecycle)
        conn.on("Page.frameNavigated", self._on_navigated)
        conn.on("Network.requestWillBeSent", self._on_request)
        conn.on("Network.responseReceived", self._on_response)
        conn.on("Network.loadingFailed", self._on_failed)
        conn.on("Inspector.targetCrashed", self._on_crash)
        conn.on("Page.javascriptDialogOpening", self._on_dialog)
        conn.on_close(lambda _error: self._changed.set())

    @classmethod
    async def open(cls, browser: Browser, route: Route, policy: UrlPolicy) -> Page:
        """Create the context (with its route as proxy), the page, and its connection."""
        context_id: str | None = None
        conn: CdpConnection | None = None
        try:
            created = await browser.conn.call(
                "Target.createBrowserContext",
                {"proxyServer": route.url, "proxyBypassList": "<-loopback>"},
            )
            context_id = created["browserContextId"]
            params = {"behavior": "deny", "browserContextId": context_id}
            await browser.conn.call("Browser.setDownloadBehavior", params)
            target = await browser.conn.call(
                "Target.createTarget",
                {"url": "about:blank", "browserContextId": context_id, **VIEWPORT},
            )
            target_id = target["targetId"]
            conn = await CdpConnection.open(
                f"ws://127.0.0.1:{browser.port}/devtools/page/{target_id}",
                name=f"{browser.name}/{target_id[:8]}",
                max_size=MAX_MESSAGE_BYTES,
                lost=lambda: CdpClosed("the page's DevTools connection closed"),
            )
            page = cls(
                browser,
                context_id=context_id,
                target_id=target_id,
                conn=conn,
                route=route,
                policy=policy,
            )
            await asyncio.gather(
                conn.call("Page.enable"),
                conn.call("Page.setLifecycleEventsEnabled", {"enabled": True}),
                conn.call("Network.enable", {"maxTotalBufferSize": 0, "maxResourceBufferSize": 0}),
            )
            return page
        except BaseException:
            await _discard(browser, context_id, conn, route)
            raise

    @property
    def usable(self) -> bool:
        """Whether the page can still take work."""
        return not (self.closed or self.crashed or self.conn.closed or not self.browser.alive)

    async def call(self, method: str, params: Params | None = None) -> Params:
        """One DevTools call on this page; a closed connection is explained (crash, lost)."""
        try:
            return await self.conn.call(method, params)
        except CdpClosed as exc:
            raise await self.explain(exc) from exc

    async def explain(self, error: BrowserError) -> BrowserError:
        """What a closed page connection means: the browser died, the page crashed, or closed."""
        if isinstance(error, ResultTooLarge | PageCrashed | BrowserLost):
            return error
        if not isinstance(error, CdpClosed):
            return error
        if self.crashed:
            return PageCrashed("the page's renderer crashed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.browser.dead.wait(), LOST_GRACE)
        if self.browser.dead.is_set():
            return BrowserLost(f"browser {self.browser.name} went away during the job")
        return error

    async def navigate(self, url: str, wait_until: str = "load") -> Navigation:
        """Navigate the main frame under the URL policy and wait for `wait_until`."""
        self.policy.check_url(url)
        mark = self.route.mark()
        self.refused = None
        result = await self.call("Page.navigate", {"url": url})
        self.check_navigation(result, mark)
        loader = result.get("loaderId")
        if loader:
            wanted = LIFECYCLE[wait_until]
            await self.until(lambda: wanted in self._lifecycle.get(loader, ()))
        self.check_refused()
        return Navigation(loader, self._status.get(loader or ""))

    def check_navigation(self, result: Params, mark: int) -> None:
        """Raise for a Page.navigate answer with `errorText`, naming a refusal if there was one."""
        error = result.get("errorText")
        if not error:
            return
        refused = self.route.since(mark, "refused")
        if refused:
            raise UrlNotAllowed(f"{refused[0].reason} ({refused[0].target})")
        failed = self.route.since(mark, "failed")
        raise NavigationFailed(f"{error}: {failed[0].reason}" if failed else str(error))

    def check_refused(self) -> None:
        """Raise when a main-frame document request was refused since the last navigation."""
        if self.refused is not None:
            raise UrlNotAllowed(f"{self.refused.reason} ({self.refused.target})")

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` holds after some page event; raises if the page goes away
        or one of its documents is refused."""
        while True:
            if self.conn.error is not None:
                raise await self.explain(self.conn.error)
            self.check_refused()
            if predicate():
                return
            self._changed.clear()
            await self._changed.wait()

    async def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        """Evaluate JavaScript in the page and return its value; ScriptFailed if it throws."""
        result = await self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": await_promise},
        )
        if "exceptionDetails" in result:
            raise ScriptFailed(exception_text(result["exceptionDetails"]))
        return result.get("result", {}).get("value")

    async def screenshot(self) -> bytes:
        """A PNG of the viewport."""
        result = await self.call("Page.captureScreenshot", {"format": "png"})
        return base64.b64decode(result.get("data", ""))

    async def close(self) -> None:
        """Dispose of the context (its page with it) and the route, within about a second."""
        if self.closed:
            return
        self.closed = True
        await _discard(self.browser, self.context_id, self.conn, self.route)

    # -- event listeners (synchronous: they only update state and wake waiters)

    def _on_lifecycle(self, params: Params) -> None:
        if params.get("frameId") != self.target_id:
            return
        names = self._lifecycle.setdefault(str(params.get("loaderId", "")), set())
        names.add(str(params.get("name", "")))
        while len(self._lifecycle) > KEEP_LOADERS:
            self._lifecycle.pop(next(iter(self._lifecycle)))
        self._changed.set()

    def _on_navigated(self, params: Params) -> None:
        frame = params.get("frame") or {}
        if frame.get("id") == self.target_id:
            self.url = str(frame.get("url", self.url)) + str(frame.get("urlFragment", ""))

    def _on_request(self, params: Params) -> None:
        if params.get("type") == "Document" and params.get("frameId") == self.target_id:
            self._docs[str(params.get("requestId"))] = str(params["request"]["url"])
            while len(self._docs) > KEEP_LOADERS:
                self._docs.pop(next(iter(self._docs)))

    def _on_response(self, params: Params) -> None:
        if params.get("type") == "Document" and params.get("frameId") == self.target_id:
            self._status[str(params.get("loaderId", ""))] = int(params["response"]["status"])
            while len(self._status) > KEEP_LOADERS:
                self._status.pop(next(iter(self._status)))

    def _on_failed(self, params: Params) -> None:
        url = self._docs.pop(str(params.get("requestId")), None)
        if url is None:
            return
        try:
            dest = destination(url)
        except UrlNotAllowed:
            return
        note = self.route.refusal_for(dest.host, dest.port)
        if note is not None:
            self.refused = note
            self._changed.set()

    def _on_dialog(self, _params: Params) -> None:
        # alert(), confirm(), beforeunload... would block the page (and every later call) until
        # answered: dismiss them, as a browser without a user would.
        task = asyncio.create_task(self.conn.call("Page.handleJavaScriptDialog", {"accept": False}))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a dialog on a page that went away is no news

    def _on_crash(self, _params: Params) -> None:
        self.crashed = True
        self.conn.fail(PageCrashed("the page's renderer crashed"))


async def _discard(
    browser: Browser, context_id: str | None, conn: CdpConnection | None, route: Route
) -> None:
    """Close what a page holds; quietly, and in at most about a second."""
    if context_id is not None and browser.alive:
        try:
            await asyncio.wait_for(
                browser.conn.call("Target.disposeBrowserContext", {"browserContextId": context_id}),
                CLOSE_TIMEOUT,
            )
        except (BrowserError, TimeoutError) as exc:
            log.warning("browser_context_dispose_failed", browser=browser.name, error=repr(exc))
    await route.close()
    if conn is not None:
        await conn.close()
