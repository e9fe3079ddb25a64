"""Headless Chromium over a hand-written Chrome DevTools Protocol client: `browser.scrape`,
`browser.action` and browser sessions, every request checked by the engine's egress proxy."""

from executors.browser.executor import BrowserExecutor, browser_executor

__all__ = ["BrowserExecutor", "browser_executor"]
