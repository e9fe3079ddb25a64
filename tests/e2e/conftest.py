"""Module fixtures of the browser end-to-end tests (a module defining its own wins)."""

from tests.support.browser import acme, server, site  # noqa: F401
