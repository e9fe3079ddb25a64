"""Executors: the backends that run attempts (system, Docker, Chromium, workflows, lifecycle)."""
