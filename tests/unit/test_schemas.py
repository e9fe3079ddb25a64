"""Schemas: every event round-trips and stays readable across versions; kinds validate input."""

from __future__ import annotations

import json
import types
from datetime import UTC, datetime
from typing import Any, Union, get_args, get_origin

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import (
    JOB_EVENT_NAMES,
    JOB_EVENT_TYPES,
    JobEvent,
    JobFailed,
    decode_job_event,
    encode_event,
)
from schemas.kinds import KINDS, SandboxExecInput, input_schema, validate_input

INT64 = 2**63

# JSON-like values for the `Any` fields: exactly what a JSON round trip gives back.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-INT64, INT64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
# msgspec writes aware datetimes as RFC 3339; UTC with microseconds reads back exactly.
utc_datetimes = st.datetimes(timezones=st.just(UTC))


def strategy_for(hint: Any) -> st.SearchStrategy[Any]:
    """A strategy for a field's type, JSON-faithful where `st.from_type` alone is not."""
    if hint is Any:
        return json_values
    if hint is datetime:
        return utc_datetimes
    if hint is int:
        return st.integers(-INT64, INT64 - 1)
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return st.one_of([strategy_for(arg) for arg in get_args(hint)])
    if origin is dict:
        key, value = get_args(hint)
        return st.dictionaries(strategy_for(key), strategy_for(value), max_size=4)
    return st.from_type(hint)


def every_field(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """Build `cls` drawing every field, defaulted ones included."""
    fields = {f.name: strategy_for(f.type) for f in msgspec.structs.fields(cls)}
    return st.builds(cls, **fields)


for _event_type in JOB_EVENT_TYPES:
    st.register_type_strategy(_event_type, every_field(_event_type))


def as_dict(event: JobEvent) -> dict[str, Any]:
    raw: dict[str, Any] = msgspec.json.decode(encode_event(event))
    return raw


# --- events ---------------------------------------------------------------------------


def test_every_event_has_its_class_name_as_tag() -> None:
    tags = [t.__struct_config__.tag for t in JOB_EVENT_TYPES]
    assert tags == [t.__name__ for t in JOB_EVENT_TYPES]
    assert set(tags) == JOB_EVENT_NAMES
    assert len(set(tags)) == len(tags)


@pytest.mark.parametrize("event_type", JOB_EVENT_TYPES, ids=lambda t: t.__name__)
@given(data=st.data())
def test_event_round_trips(event_type: type[JobEvent], data: st.DataObject) -> None:
    event = data.draw(st.from_type(event_type))
    encoded = encode_event(event)
    decoded = decode_job_event(encoded)
    assert type(decoded) is event_type
    assert decoded == event
    assert encode_event(decoded) == encoded
    assert json.loads(encoded)["type"] == event_type.__name__


@pytest.mark.parametrize("event_type", JOB_EVENT_TYPES, ids=lambda t: t.__name__)
@given(data=st.data(), extra=json_values)
def test_old_readers_read_events_with_new_fields(
    event_type: type[JobEvent], data: st.DataObject, extra: Any
) -> None:
    event = data.draw(st.from_type(event_type))
    raw = as_dict(event)
    raw["field_added_later"] = extra
    assert decode_job_event(msgspec.json.encode(raw)) == event


@given(event=st.from_type(JobFailed))
def test_nested_structs_tolerate_new_fields(event: JobFailed) -> None:
    raw = as_dict(event)
    raw["error"]["hint"] = "added later"
    assert decode_job_event(msgspec.json.encode(raw)) == event


@pytest.mark.parametrize("event_type", JOB_EVENT_TYPES, ids=lambda t: t.__name__)
@given(data=st.data())
def test_new_readers_fill_defaults_for_fields_old_events_lack(
    event_type: type[JobEvent], data: st.DataObject
) -> None:
    event = data.draw(st.from_type(event_type))
    defaulted = {
        f.name: f.default
        for f in msgspec.structs.fields(event_type)
        if f.default is not msgspec.NODEFAULT
    }
    raw = {k: v for k, v in as_dict(event).items() if k not in defaulted}
    expected = msgspec.structs.replace(event, **defaulted)
    assert decode_job_event(msgspec.json.encode(raw)) == expected


@given(event=st.from_type(JobFailed))
def test_an_unknown_event_type_is_a_decode_error(event: JobFailed) -> None:
    raw = as_dict(event) | {"type": "JobTeleported"}
    with pytest.raises(msgspec.DecodeError):
        decode_job_event(msgspec.json.encode(raw))


# --- kinds ----------------------------------------------------------------------------

# The smallest valid input of each kind; a new kind must add one here.
VALID_INPUTS: dict[str, dict[str, Any]] = {
    "sandbox.exec": {"command": "echo hi", "workspace": "ws-1"},
    "pipeline.run": {"workspace": "ws-1", "steps": [{"command": "make test"}]},
    "browser.action": {"actions": [{"method": "Page.navigate", "params": {"url": "https://x"}}]},
    "browser.scrape": {"url": "https://example.com"},
    "github.runner": {"workspace": "ws-1", "workflow_path": ".github/workflows/ci.yml"},
    "session.terminate": {"session_id": "s-1"},
    "session.bulk_terminate": {"all": True},
    "workspace.delete": {"workspace": "ws-1"},
    "workspace.bulk_delete": {"workspaces": ["ws-1", "ws-2"]},
    "system.echo": {},
}
# Kinds whose input nests objects, and where: (field, a valid element, the path msgspec reports).
NESTED: dict[str, tuple[str, dict[str, Any], str]] = {
    "pipeline.run": ("steps", {"command": "make"}, "$.steps[0]"),
    "browser.action": ("actions", {"method": "Runtime.evaluate"}, "$.actions[0]"),
}


def test_every_kind_has_an_example() -> None:
    assert set(VALID_INPUTS) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_kind_has_a_json_schema_of_its_fields(kind: str) -> None:
    spec = KINDS[kind]
    schema = input_schema(spec)
    json.dumps(schema)  # servable as is
    root = schema["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    fields = msgspec.structs.fields(spec.input_type)
    assert root["type"] == "object"
    assert set(root["properties"]) == {f.encode_name for f in fields}
    assert set(root.get("required", [])) == {f.encode_name for f in fields if f.required}
    assert root["additionalProperties"] is False


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_kind_accepts_its_example(kind: str) -> None:
    assert isinstance(validate_input(kind, VALID_INPUTS[kind]), KINDS[kind].input_type)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_kind_rejects_unknown_fields(kind: str) -> None:
    raw = VALID_INPUTS[kind] | {"surprise_field": 1}
    with pytest.raises(msgspec.ValidationError, match="unknown field `surprise_field`"):
        validate_input(kind, raw)


@pytest.mark.parametrize("kind", sorted(NESTED))
def test_unknown_nested_field_names_its_path(kind: str) -> None:
    field, element, path = NESTED[kind]
    raw = VALID_INPUTS[kind] | {field: [element | {"surprise_field": 1}]}
    with pytest.raises(msgspec.ValidationError) as info:
        validate_input(kind, raw)
    assert str(info.value) == f"Object contains unknown field `surprise_field` - at `{path}`"


def test_a_mistyped_field_names_its_path() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.command`"):
        validate_input("sandbox.exec", {"command": 3, "workspace": "ws-1"})


def test_validation_is_strict_about_types() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"at `\$\.sleep_ms`"):
        validate_input("system.echo", {"sleep_ms": "10"})


@pytest.mark.parametrize(
    "raw",
    [
        {"command": "ls", "workspace": "ws-1", "ephemeral": True, "image": "alpine"},
        {"command": "ls"},
        {"command": "ls", "ephemeral": False},
    ],
    ids=["both", "neither", "neither-explicit"],
)
def test_sandbox_exec_needs_exactly_one_of_workspace_and_ephemeral(raw: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError, match="either `workspace` or `ephemeral"):
        validate_input("sandbox.exec", raw)


def test_sandbox_exec_accepts_each_alone() -> None:
    workspace = validate_input("sandbox.exec", {"command": "ls", "workspace": "ws-1"})
    ephemeral = validate_input("sandbox.exec", {"command": "ls", "ephemeral": True, "image": "a"})
    assert isinstance(workspace, SandboxExecInput) and isinstance(ephemeral, SandboxExecInput)
    assert (workspace.workspace, workspace.ephemeral) == ("ws-1", False)
    assert (ephemeral.workspace, ephemeral.ephemeral) == (None, True)


def test_ephemeral_sandbox_needs_an_image() -> None:
    with pytest.raises(msgspec.ValidationError, match="`image` is required"):
        validate_input("sandbox.exec", {"command": "ls", "ephemeral": True})
