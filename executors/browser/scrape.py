"""`browser.scrape`: navigate, wait, extract in one evaluation, optionally capture the page."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from executors.browser.errors import BrowserError, InvalidSelector, ScriptFailed, StepTimeout
from executors.browser.limits import (
    MAX_BLOCKED_LISTED,
    MAX_MATCHES,
    MAX_SCRAPE_CHARS,
    MAX_SCRAPE_RESULT_BYTES,
    fit,
)
from executors.browser.page import Page
from schemas.kinds import BrowserScrapeInput

DEFAULT_TIMEOUT_MS = 30_000
SELECTOR_POLL_MS = 50
# Stores a PNG and returns its reference (name, url, bytes, sha256) for the result.
StoreArtifact = Callable[[str, bytes, str], Awaitable[dict[str, Any]]]

# One evaluation returns everything (a round trip is 4-7 ms; several would add up). Texts are
# cut in the page so that a huge page never crosses the DevTools connection whole.
_EXTRACT = """(() => {
  const o = %(options)s;
  let budget = o.budget, truncated = false;
  const clip = (s) => {
    s = s == null ? '' : String(s);
    if (s.length > budget) { truncated = true; s = s.slice(0, Math.max(budget, 0)); }
    budget -= s.length;
    return s;
  };
  const out = {url: location.href, title: clip(document.title)};
  if (o.selector === null) {
    out.text = clip(document.body ? document.body.innerText : document.documentElement.innerText);
    if (o.html) out.html = clip(document.documentElement.outerHTML);
  } else {
    let nodes;
    try {
      nodes = o.all ? Array.from(document.querySelectorAll(o.selector))
                    : [document.querySelector(o.selector)].filter(Boolean);
    } catch (e) { return {invalid_selector: String(e.message || e)}; }
    out.count = nodes.length;
    out.matches = [];
    for (const n of nodes.slice(0, o.max_matches)) {
      if (budget <= 0) { truncated = true; break; }
      const m = {text: clip(n.innerText !== undefined ? n.innerText : n.textContent)};
      if (o.html) m.html = clip(n.outerHTML);
      if (o.attributes) {
        m.attributes = {};
        for (const a of Array.from(n.attributes)) m.attributes[a.name] = clip(a.value);
      }
      out.matches.push(m);
    }
    if (nodes.length > o.max_matches) truncated = true;
  }
  out.truncated = truncated;
  return out;
})()"""

_WAIT_SELECTOR = """new Promise((resolve) => {
  const sel = %(selector)s;
  const found = () => { try { return document.querySelector(sel) !== null; }
                        catch (e) { resolve('invalid: ' + (e.message || e)); return true; } };
  if (found()) return resolve(true);
  const timer = setInterval(() => { if (found()) { clearInterval(timer); resolve(true); } },
                            %(poll)d);
})"""


def extract_script(spec: BrowserScrapeInput, budget: int = MAX_SCRAPE_CHARS) -> str:
    """The JavaScript expression that extracts what `spec` asks for. Pure."""
    options = {
        "selector": spec.selector,
        "all": spec.all,
        "html": spec.html,
        "attributes": spec.attributes,
        "budget": budget,
        "max_matches": MAX_MATCHES,
    }
    return _EXTRACT % {"options": msgspec.json.encode(options).decode()}


def wait_selector_script(selector: str) -> str:
    """A promise resolving to true once `selector` matches (or to `invalid: ...`). Pure."""
    return _WAIT_SELECTOR % {
        "selector": msgspec.json.encode(selector).decode(),
        "poll": SELECTOR_POLL_MS,
    }


class _Phase:
    """What the scrape is waiting for, to say so when time runs out."""

    def __init__(self) -> None:
        self.what = "the page to start loading"


async def scrape(
    page: Page,
    spec: BrowserScrapeInput,
    *,
    store: StoreArtifact | None = None,
) -> dict[str, Any]:
    """Run one scrape on a page; everything (navigation included) ends at `timeout_ms`."""
    timeout_ms = spec.timeout_ms or DEFAULT_TIMEOUT_MS
    phase = _Phase()
    mark = page.route.mark()
    try:
        async with asyncio.timeout(timeout_ms / 1000):
            result = await _scrape(page, spec, phase, store)
    except TimeoutError as exc:
        raise StepTimeout(f"timed out after {timeout_ms} ms waiting for {phase.what}") from exc
    blocked = page.route.since(mark, "refused")
    if blocked:
        result["blocked"] = [
            {"url": n.target, "reason": n.reason} for n in blocked[:MAX_BLOCKED_LISTED]
        ]
    return result


async def _scrape(
    page: Page, spec: BrowserScrapeInput, phase: _Phase, store: StoreArtifact | None
) -> dict[str, Any]:
    phase.what = f"`{spec.wait_until}` of {spec.url}"
    navigation = await page.navigate(spec.url, spec.wait_until)
    if spec.wait_for_selector:
        phase.what = f"selector {spec.wait_for_selector!r}"
        found = await page.evaluate(
            wait_selector_script(spec.wait_for_selector), await_promise=True
        )
        if isinstance(found, str):
            raise InvalidSelector(f"{spec.wait_for_selector!r}: {found}")
    phase.what = "the extraction"
    data = await page.evaluate(extract_script(spec))
    if not isinstance(data, dict):
        raise ScriptFailed("the extraction returned nothing (the page replaced the document?)")
    if "invalid_selector" in data:
        raise InvalidSelector(f"{spec.selector!r}: {data['invalid_selector']}")
    result: dict[str, Any] = {
        "url": data.get("url"),
        "status": navigation.status,
        "title": data.get("title"),
    }
    for key in ("count", "matches", "text", "html"):
        if key in data:
            result[key] = data[key]
    result["truncated"] = bool(data.get("truncated"))
    fit(result, MAX_SCRAPE_RESULT_BYTES)
    if spec.screenshot:
        if store is None:
            raise BrowserError("screenshots need the artifact store, and NATS is not connected")
        phase.what = "the screenshot"
        png = await page.screenshot()
        result["screenshot"] = await store("screenshot", png, "image/png")
    return result


def artifact_reference(name: str, data: bytes, content_type: str, job_id: str) -> dict[str, Any]:
    """What an event says about a stored artifact: never the bytes, only where they are. Pure."""
    return {
        "name": name,
        "url": f"/v1/jobs/{job_id}/artifacts/{name}",
        "content_type": content_type,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
