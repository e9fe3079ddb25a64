"""YAML as GitHub reads workflows: YAML 1.2 booleans (`on`, `yes`, `off` stay strings) and
no timestamps, so `on:` is the key "on" and dates stay text. Pure."""

from __future__ import annotations

import re
from typing import Any

import yaml

from executors.github.errors import WorkflowInvalid


class WorkflowLoader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core schema's booleans and without timestamps."""


WorkflowLoader.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
WorkflowLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML text; WorkflowInvalid naming `source` on a syntax error."""
    try:
        return yaml.load(text, Loader=WorkflowLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise WorkflowInvalid(f"unable to read workflow '{source}': {exc}") from exc
