"""DevTools framing, the action refusal list, result bounds, scripts (all pure)."""

from __future__ import annotations

import json

import msgspec
import pytest

from executors.browser.actions import check_actions, refusal
from executors.browser.cdp import decode_message, encode_call
from executors.browser.chromium import launch_args
from executors.browser.errors import ActionRefused
from executors.browser.limits import bounded, bounded_list, fit, json_size
from executors.browser.page import exception_text
from executors.browser.scrape import artifact_reference, extract_script, wait_selector_script
from schemas.kinds import BrowserScrapeInput, CdpAction


def test_a_call_is_one_json_object_with_id_method_params() -> None:
    assert json.loads(encode_call(7, "Page.navigate", {"url": "https://x/"}, None)) == {
        "id": 7,
        "method": "Page.navigate",
        "params": {"url": "https://x/"},
    }
    # Empty params are left out (the protocol treats a missing `params` as `{}`).
    assert json.loads(encode_call(8, "Page.enable", None, "S1")) == {
        "id": 8,
        "method": "Page.enable",
        "sessionId": "S1",
    }


def test_answers_errors_and_events_decode() -> None:
    answer = decode_message(b'{"id": 3, "result": {"frameId": "F"}}')
    assert (answer.id, answer.result, answer.error) == (3, {"frameId": "F"}, None)
    error = decode_message('{"id": 4, "error": {"code": -32601, "message": "nope"}}')
    assert error.error is not None and error.error.code == -32601 and error.error.message == "nope"
    event = decode_message(b'{"method": "Page.loadEventFired", "params": {"timestamp": 1.5}}')
    assert event.id is None and event.method == "Page.loadEventFired"
    assert event.params == {"timestamp": 1.5}
    with pytest.raises(msgspec.DecodeError):
        decode_message(b"not json")


@pytest.mark.parametrize(
    "method",
    [
        "Browser.close",
        "Browser.setDownloadBehavior",
        "Target.createTarget",
        "Target.setAutoAttach",
        "SystemInfo.getInfo",
        "Fetch.enable",
        "Fetch.continueRequest",
        "Tracing.start",
        "Storage.getCookies",
        "Tethering.bind",
        "Network.setRequestInterception",
        "Network.loadNetworkResource",
        "Page.setDownloadBehavior",
        "DOM.setFileInputFiles",
        "Input.dispatchDragEvent",
        "Security.setIgnoreCertificateErrors",
        "Extensions.loadUnpacked",
        "Made.up",
    ],
)
def test_browser_wide_and_policy_breaking_methods_are_refused(method: str) -> None:
    assert refusal(method) is not None


@pytest.mark.parametrize(
    "method",
    [
        "Page.navigate",
        "Page.captureScreenshot",
        "Runtime.evaluate",
        "DOM.getDocument",
        "Input.insertText",
        "Input.dispatchMouseEvent",
        "Network.enable",
        "Network.setCookie",
        "Network.setExtraHTTPHeaders",
        "Emulation.setDeviceMetricsOverride",
    ],
)
def test_page_methods_are_allowed(method: str) -> None:
    assert refusal(method) is None


def test_one_refused_action_refuses_the_job_naming_it() -> None:
    actions = [
        CdpAction(method="Runtime.evaluate", params={"expression": "1"}),
        CdpAction(method="Page.reload", wait_for="Fetch.requestPaused"),
    ]
    with pytest.raises(ActionRefused, match=r"action 2 \(Fetch.requestPaused\): Fetch"):
        check_actions(actions)


def test_bounded_results() -> None:
    assert bounded({"a": 1}, 100) == {"a": 1}
    big = bounded({"s": "x" * 5000}, 1000)
    assert big["truncated"] is True and big["bytes"] > 5000 and len(big["preview"]) <= 1000
    out = bounded_list([{"s": "y" * 300}] * 10, 1000, 1500)
    assert out[:4] == [{"s": "y" * 300}] * 4 and out[-1]["truncated"] is True


def test_extraction_script_carries_the_options_as_json() -> None:
    spec = BrowserScrapeInput(url="https://x/", selector="a[href='\"</script>']", all=False)
    script = extract_script(spec, budget=10)
    assert '"selector":"a[href=\'\\"</script>\']"' in script
    assert '"all":false' in script and '"budget":10' in script
    assert '"li.x"' in wait_selector_script("li.x")


def test_exception_text_and_artifact_reference() -> None:
    details = {"text": "Uncaught", "exception": {"description": "Error: boom\n at x"}}
    assert exception_text(details) == "Error: boom\n at x"
    assert exception_text({"text": "Uncaught"}) == "Uncaught"
    ref = artifact_reference("screenshot-1.png", b"png", "image/png", "job_1")
    assert ref["url"] == "/v1/jobs/job_1/artifacts/screenshot-1.png" and ref["bytes"] == 3


def test_launch_arguments_route_everything_through_the_proxy() -> None:
    args = launch_args("/c", user_data_dir="/d", proxy_url="http://127.0.0.1:9", as_root=False)
    assert "--proxy-server=http://127.0.0.1:9" in args
    assert "--proxy-bypass-list=<-loopback>" in args
    assert "--remote-debugging-port=0" in args and "--no-startup-window" in args
    assert "--user-data-dir=/d" in args and "--no-sandbox" not in args
    assert "--no-sandbox" in launch_args("/c", user_data_dir="/d", proxy_url="x", as_root=True)


def test_cli_scrape_flags_make_the_input() -> None:
    from cli.jobs import scrape_input
    from cli.main import build_parser

    line = ["jobs", "scrape", "--url", "https://x/", "--selector", "h1", "--first", "--html"]
    line += ["--wait-until", "networkidle", "--timeout-ms", "5000", "--screenshot"]
    assert scrape_input(build_parser().parse_args(line)) == {
        "url": "https://x/",
        "selector": "h1",
        "all": False,
        "html": True,
        "wait_until": "networkidle",
        "timeout_ms": 5000,
        "screenshot": True,
    }
    plain = build_parser().parse_args(["jobs", "scrape", "--url", "https://x/"])
    assert scrape_input(plain) == {"url": "https://x/"}


def test_fit_halves_the_longest_strings_until_the_json_fits() -> None:
    result = {
        "title": "t",
        "matches": [{"text": "\u0001" * 1000}, {"text": "short"}],
        "truncated": False,
    }
    fitted = fit(result, 2000)
    assert json_size(fitted) <= 2000 and fitted["truncated"] is True
    assert fitted["matches"][1]["text"] == "short" and fitted["title"] == "t"
    small = {"text": "ok", "truncated": False}
    assert fit(small, 1000) == {"text": "ok", "truncated": False}
