"""Errors of the browser executor.

BrowserError
├── LaunchFailed            Chromium could not be started or did not open its DevTools port
├── BrowserLost             the browser (or its DevTools connection) went away mid-job: retriable
├── CdpError                the protocol answered a call with an error (`code`, `message`)
├── CdpClosed               one page's DevTools connection closed (target closed or crashed)
│   └── ResultTooLarge      a message from the browser was over the size limit
├── PageCrashed             the page's renderer crashed
├── UrlNotAllowed           the URL policy refused a URL (scheme, address); `reason` says why
├── NavigationFailed        the navigation failed (`errorText`, e.g. net::ERR_NAME_NOT_RESOLVED)
├── ScriptFailed            page JavaScript threw (Runtime.evaluate exceptionDetails)
├── InvalidSelector         a CSS selector did not parse
├── ActionRefused           a browser.action method reaches beyond the job's own context
├── SessionNotFound         no live browser session with that id (or it ended mid-job)
│   └── SessionLost         its browser (or the process holding it) is gone
└── StepTimeout             a wait ran past its time limit

Every one of them becomes a `JobError` in one place (`executor.failure_of`), with a stable code.
"""

from __future__ import annotations


class BrowserError(Exception):
    """Root of every error the browser executor raises."""

    code = "browser_error"
    retriable = False


class LaunchFailed(BrowserError):
    """Chromium did not start."""

    code = "browser_launch_failed"
    retriable = True


class BrowserLost(BrowserError):
    """The browser process or its DevTools connection is gone."""

    code = "browser_lost"
    retriable = True


class CdpError(BrowserError):
    """An error answer to a DevTools call."""

    code = "cdp_error"

    def __init__(self, method: str, code: int, message: str, data: object = None) -> None:
        super().__init__(f"{method}: {message}" + (f" ({data})" if data else ""))
        self.method = method
        self.cdp_code = code
        self.message = message
        self.data = data


class CdpClosed(BrowserError):
    """A DevTools connection closed while a call or wait was pending."""

    code = "target_closed"


class ResultTooLarge(CdpClosed):
    """The browser sent a message over the size limit; the connection was dropped."""

    code = "result_too_large"


class PageCrashed(BrowserError):
    """The page's renderer process crashed."""

    code = "page_crashed"


class UrlNotAllowed(BrowserError):
    """The URL policy refused a URL."""

    code = "url_not_allowed"


class NavigationFailed(BrowserError):
    """Page.navigate reported `errorText`."""

    code = "navigation_failed"


class ScriptFailed(BrowserError):
    """Page JavaScript threw."""

    code = "script_error"


class InvalidSelector(BrowserError):
    """A selector is not valid CSS."""

    code = "invalid_selector"


class ActionRefused(BrowserError):
    """A CDP method of browser.action is not allowed."""

    code = "action_refused"


class SessionNotFound(BrowserError):
    """The browser session does not exist here any more."""

    code = "session_not_found"


class StepTimeout(BrowserError):
    """A navigation, wait or call ran past its time limit."""

    code = "timeout"
    retriable = True


class SessionLost(SessionNotFound):
    """The session's browser is gone (its process stopped, or its browser crashed)."""
