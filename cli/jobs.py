"""`chaser jobs ...`: a client of the REST API (placeholder, being written)."""

from __future__ import annotations

import argparse


def register_jobs(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `jobs` command tree."""
    sub.add_parser("jobs", help="create and manage jobs")
