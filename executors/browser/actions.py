"""`browser.action`: DevTools calls run in order on the job's page, each one a step.

Only methods that act on the job's own page are allowed (`refusal` says why one is not):
browser-wide domains would reach other jobs' contexts or the host, and request interception
or proxy settings would get around the egress proxy's URL checks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, Protocol

from executors.base import StepReport
from executors.browser.errors import (
    ActionRefused,
    BrowserError,
    CdpError,
    NavigationFailed,
    ScriptFailed,
    StepTimeout,
    UrlNotAllowed,
)
from executors.browser.limits import (
    MAX_JOB_RESULTS_BYTES,
    MAX_STEP_RESULT_BYTES,
    bounded,
    bounded_list,
)
from executors.browser.page import Page, exception_text
from schemas.common import JobError, StepStatus
from schemas.kinds import BrowserActionInput, CdpAction

DEFAULT_ACTION_TIMEOUT_MS = 30_000
DEFAULT_JOB_TIMEOUT_MS = 300_000

# Domains whose methods act on the page they are sent to.
PAGE_DOMAINS = frozenset(
    {
        "Accessibility",
        "Animation",
        "Audits",
        "Autofill",
        "CSS",
        "CacheStorage",
        "Console",
        "DOM",
        "DOMDebugger",
        "DOMSnapshot",
        "DOMStorage",
        "Database",
        "Debugger",
        "DeviceOrientation",
        "Emulation",
        "EventBreakpoints",
        "FedCm",
        "HeadlessExperimental",
        "HeapProfiler",
        "IndexedDB",
        "Input",
        "Inspector",
        "LayerTree",
        "Log",
        "Media",
        "Network",
        "Overlay",
        "Page",
        "Performance",
        "PerformanceTimeline",
        "Preload",
        "Profiler",
        "Runtime",
        "Schema",
        "WebAudio",
        "WebAuthn",
    }
)
INTERCEPTION = "intercepts requests and could get around the URL checks"
BROWSER_WIDE = "reaches beyond the job's own browser context"
HOST_FILES = "touches files on the executor's host"
REFUSED_DOMAINS = {
    "Fetch": INTERCEPTION,
    **{
        domain: BROWSER_WIDE
        for domain in (
            "Browser",
            "Target",
            "SystemInfo",
            "Tethering",
            "Tracing",
            "Memory",
            "Storage",
            "ServiceWorker",
            "BackgroundService",
            "Cast",
            "PWA",
            "Extensions",
            "Security",
            "DeviceAccess",
            "BluetoothEmulation",
            "FileSystem",
            "IO",
        )
    },
}
REFUSED_METHODS = {
    "Network.setRequestInterception": INTERCEPTION,
    "Network.continueInterceptedRequest": INTERCEPTION,
    "Network.getResponseBodyForInterception": INTERCEPTION,
    "Network.takeResponseBodyForInterceptionAsStream": INTERCEPTION,
    "Network.loadNetworkResource": "loads resources outside the page and its URL checks",
    "Network.clearBrowserCache": BROWSER_WIDE,
    "Network.clearBrowserCookies": BROWSER_WIDE,
    "Page.setDownloadBehavior": HOST_FILES,
    "DOM.setFileInputFiles": HOST_FILES,
    "Input.dispatchDragEvent": HOST_FILES,
}
SCRIPT_METHODS = frozenset({"Runtime.evaluate", "Runtime.callFunctionOn"})


class StepSink(Protocol):
    """Where finished steps go (the job's context, or a remote requester)."""

    async def step(self, report: StepReport) -> None:
        """Record one step."""


def refusal(method: str) -> str | None:
    """Why a DevTools method may not be called by a job, or None when it may. Pure."""
    domain = method.split(".", 1)[0]
    if method in REFUSED_METHODS:
        return f"{method} {REFUSED_METHODS[method]}"
    if domain in REFUSED_DOMAINS:
        return f"{domain}.* {REFUSED_DOMAINS[domain]}"
    if domain not in PAGE_DOMAINS:
        return f"the {domain} domain is not one that acts on the job's own page"
    return None


def check_actions(actions: Sequence[CdpAction]) -> None:
    """Refuse the whole job up front when any action is refused (nothing runs)."""
    for index, action in enumerate(actions):
        for method in (action.method, action.wait_for):
            reason = refusal(method) if method else None
            if reason is not None:
                raise ActionRefused(f"action {index + 1} ({method}): {reason}")


class ActionsOutcome:
    """What a sequence of actions produced."""

    def __init__(self) -> None:
        self.results: list[Any] = []
        self.errors: list[dict[str, Any]] = []
        self.failure: BrowserError | None = None
        self.failed_at = 0

    def result(self, page: Page) -> dict[str, Any]:
        """The job's result: the page's URL and every action's (bounded) result."""
        out: dict[str, Any] = {
            "url": page.url,
            "results": bounded_list(self.results, MAX_STEP_RESULT_BYTES, MAX_JOB_RESULTS_BYTES),
        }
        if self.errors:
            out["errors"] = self.errors
        return out


async def run_actions(page: Page, spec: BrowserActionInput, sink: StepSink) -> ActionsOutcome:
    """Run every action in order; stop at the first failure unless `stop_on_error` is false.

    A lost browser, a crashed page or the job's time limit end the whole sequence.
    """
    check_actions(spec.actions)
    outcome = ActionsOutcome()
    timeout_ms = spec.timeout_ms or DEFAULT_JOB_TIMEOUT_MS
    try:
        async with asyncio.timeout(timeout_ms / 1000):
            for index, action in enumerate(spec.actions):
                failure = await _run_step(page, index, action, sink, outcome)
                if failure is not None and spec.stop_on_error:
                    outcome.failure, outcome.failed_at = failure, index + 1
                    break
    except TimeoutError as exc:
        raise StepTimeout(f"the actions did not finish within {timeout_ms} ms") from exc
    return outcome


async def _run_step(
    page: Page, index: int, action: CdpAction, sink: StepSink, outcome: ActionsOutcome
) -> BrowserError | None:
    started = time.monotonic()
    failure: BrowserError | None = None
    try:
        result: Any = await run_action(page, action)
    except (CdpError, NavigationFailed, ScriptFailed, StepTimeout, UrlNotAllowed) as exc:
        failure = exc
        result = {"error": {"code": exc.code, "message": str(exc)}}
        outcome.errors.append({"action": index + 1, "code": exc.code, "message": str(exc)})
    outcome.results.append(result)
    await sink.step(
        StepReport(
            name=f"{index + 1}:{action.method}",
            status=StepStatus.TIMED_OUT
            if isinstance(failure, StepTimeout)
            else StepStatus.FAILED
            if failure
            else StepStatus.SUCCEEDED,
            result=bounded(result, MAX_STEP_RESULT_BYTES),
            duration_ms=int((time.monotonic() - started) * 1000),
        )
    )
    return failure


async def run_action(page: Page, action: CdpAction) -> Any:
    """One DevTools call (and its wait); raises for a protocol error, a failed navigation, a
    thrown script, a refused document, or its time limit."""
    timeout_ms = action.timeout_ms or DEFAULT_ACTION_TIMEOUT_MS
    mark = page.route.mark()
    if action.method == "Page.navigate":
        url = str(action.params.get("url", ""))
        if url != "about:blank":
            page.policy.check_url(url)
        page.refused = None
    waiter = page.conn.expect(action.wait_for) if action.wait_for else None
    try:
        async with asyncio.timeout(timeout_ms / 1000):
            result: dict[str, Any] = await page.call(action.method, action.params)
            _check(page, action.method, result, mark)
            if waiter is not None:
                event = await waiter
                result = {**result, "event": {"method": action.wait_for, "params": event}}
    except TimeoutError as exc:
        what = f"{action.wait_for} after {action.method}" if waiter else action.method
        raise StepTimeout(f"no answer to {what} within {timeout_ms} ms") from exc
    finally:
        if waiter is not None:
            waiter.cancel()
    page.check_refused()
    return result


def _check(page: Page, method: str, result: dict[str, Any], mark: int) -> None:
    if method == "Page.navigate":
        page.check_navigation(result, mark)
    elif method in SCRIPT_METHODS and "exceptionDetails" in result:
        raise ScriptFailed(exception_text(result["exceptionDetails"]))


def failed_action(spec: BrowserActionInput, outcome: ActionsOutcome) -> JobError | None:
    """The job's error when an action stopped the sequence, naming the action."""
    if outcome.failure is None:
        return None
    method = spec.actions[outcome.failed_at - 1].method
    message = f"action {outcome.failed_at} ({method}): {outcome.failure}"
    return JobError(code=outcome.failure.code, message=message)
