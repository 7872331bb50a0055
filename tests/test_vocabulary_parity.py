"""One vocabulary: every field of every ``worker_runtime.v1`` message (read from the generated
descriptors in ``runtime_client.api``) has a field of the same name in the server's model and in
the client's model, and neither model has a field the proto lacks — so a field added in one place
and not the others fails here. The only differences allowed are listed below, each with its reason.

The walk covers:
- every message that is not an RPC's request or response: MODELS maps it to (server, client);
- every enum: the same member names (prefix dropped) on all three sides, UNSPECIFIED aside;
- the Event oneof: its members are the client's payload ``KIND``s and the server's payload types;
- every RPC: its request fields are the parameters of the RuntimeClient method (and of the
  Runtime's and EmbeddedRuntime's), and its response is a known envelope, page or result model.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import typing

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FileDescriptor

import engine
import runtime_client as c
from runtime_client.api import (
    catalog_service_pb2,
    config_service_pb2,
    interaction_service_pb2,
    management_service_pb2,
    observation_service_pb2,
    types_pb2,
)
from runtime_server import model as m
from runtime_server import runtime as rt
from runtime_server.embedded import EmbeddedRuntime

FILES: tuple[FileDescriptor, ...] = tuple(
    mod.DESCRIPTOR
    for mod in (
        types_pb2,
        management_service_pb2,
        catalog_service_pb2,
        interaction_service_pb2,
        observation_service_pb2,
        config_service_pb2,
    )
)

# proto message -> (server model, client model); None where one side has no model of its own.
MODELS: dict[str, tuple[type | None, type | None]] = {
    "Usage": (engine.Usage, c.Usage),
    "Mount": (m.Mount, c.Mount),
    "Workspace": (m.Workspace, c.Workspace),
    "ConfigBundleRef": (m.ConfigBundleRef, c.ConfigBundleRef),
    "Worker": (m.Worker, c.Worker),
    "RunError": (m.RunError, c.RunError),
    "Run": (m.Run, c.Run),
    "ToolCall": (engine.ToolCall, c.ToolCall),
    "Message": (engine.Message, c.Message),
    "TranscriptEntry": (m.TranscriptEntry, c.TranscriptEntry),
    "Diagnostic": (m.Diagnostic, c.Diagnostic),
    "WorkerCreated": (m.WorkerCreated, c.WorkerCreated),
    "WorkerStateChanged": (m.WorkerStateChanged, c.WorkerStateChanged),
    "RunQueued": (m.RunQueued, c.RunQueued),
    "RunStarted": (m.RunStarted, c.RunStarted),
    "InputCommitted": (m.InputCommitted, c.InputCommitted),
    "TextDelta": (m.TextDelta, c.TextDelta),
    "ReasoningDelta": (m.ReasoningDelta, c.ReasoningDelta),
    "ToolCallStarted": (m.ToolCallStarted, c.ToolCallStarted),
    "ToolCallFinished": (m.ToolCallFinished, c.ToolCallFinished),
    "MessageCommitted": (m.MessageCommitted, c.MessageCommitted),
    "UsageReported": (m.UsageReported, c.UsageReported),
    "PartialDiscarded": (m.PartialDiscarded, c.PartialDiscarded),
    "RunFinished": (m.RunFinished, c.RunFinished),
    "WorkerStopped": (m.WorkerStopped, c.WorkerStopped),
    "WorkerDeleted": (m.WorkerDeleted, c.WorkerDeleted),
    # the server's streams build a heartbeat from the log's last seq: no domain value
    "Heartbeat": (None, c.Heartbeat),
    "Event": (m.Event, c.Event),
    "Limits": (m.Limits, c.Limits),
    # the server reports these inside RuntimeInfo (see its exceptions), the client models them
    "Capabilities": (None, c.Capabilities),
    "WorkerCounts": (None, c.WorkerCounts),
    "RuntimeInfo": (rt.RuntimeInfo, c.RuntimeInfo),
    "Profile": (rt.Profile, c.Profile),
    "WorkspaceClaim": (rt.Claim, c.WorkspaceClaim),
    # results of RPCs, modelled on both sides
    "CreateWorkerResponse": (rt.Created, c.Created),
    "SendInputResponse": (rt.Accepted, c.Accepted),
    "GetUsageResponse": (rt.UsageSummary, c.UsageSummary),
    "ListEventsResponse": (rt.EventsPage, c.EventsPage),
    # config bundles (issue 13): the core answers a put with a (bundle, created) pair
    "ConfigBundle": (m.ConfigBundle, c.ConfigBundle),
    "PutConfigBundleResponse": (None, c.ConfigBundlePut),
    "GetConfigBundleResponse": (rt.BundleContent, c.ConfigBundleContent),
}

# Fields a side has that the proto does not carry, each deliberate. (message, side) -> {field: why}
SERVER_ONLY: dict[str, dict[str, str]] = {
    "Usage": {},  # total_tokens is a property (computed), checked below
    "Run": {"input_text": "kept until the run starts, then committed as InputCommitted"},
    "ToolCall": {"extra": "provider data sent back to the provider with the call"},
    "Message": {
        "reasoning_signature": "provider data sent back to the provider, never shown",
        "reasoning_blocks": "provider data sent back to the provider, never shown",
        "reasoning_field": "which field the provider wants reasoning back in",
    },
    "Event": {},
    "RuntimeInfo": {
        "workers_by_state": "the proto's WorkerCounts, computed at the edge",
        "provider_kinds": "the proto's Capabilities, grouped at the edge",
        "profiles": "the proto's Capabilities, grouped at the edge",
        "features": "the proto's Capabilities, grouped at the edge",
        "worker_capabilities": "the proto's Capabilities, grouped at the edge",
    },
    "Profile": {
        "system_prompt": "a profile's prompt, options and provider settings stay in the Runtime",
        "temperature": "likewise",
        "options": "likewise",
        "tool_timeout_s": "likewise",
        "max_length_continuations": "likewise",
        "examples": "likewise",
        "prefill": "likewise",
        "prefill_options": "likewise",
        "context": "the engine's ContextPolicy, sent as the three context_* fields",
    },
    "WorkspaceClaim": {
        "parts": "the path split for overlap checks",
        "field": "which request field made the claim (for error messages)",
    },
}
CLIENT_ONLY: dict[str, dict[str, str]] = {
    "Event": {"raw": "the wire message the event came from (not compared)"},
}
# Proto fields a side carries differently, each deliberate. message -> {field: why}
PROTO_ONLY: dict[str, dict[str, tuple[str, ...]]] = {
    # side(s) lacking the field: "server", "client"
    "Usage": {"total_tokens": ("server",)},  # engine.Usage.total_tokens is a property
    "RuntimeInfo": {
        "workers": ("server",),  # from workers_by_state
        "capabilities": ("server",),  # from the four tuples above
        "auth_required": ("server",),  # a fact of the gRPC server, not of the Runtime
    },
    # the server's ``provider`` is the provider's whole config; the edge sends its name, and
    # its kind as provider_kind
    "Profile": {
        "provider_kind": ("server",),
        # the server's ``context`` (an engine.ContextPolicy), field by field
        "context_max_tokens": ("server",),
        "context_max_messages": ("server",),
        "context_compaction": ("server",),
    },
    "ListEventsResponse": {"next_after_seq": ("server",)},  # the edge computes it
}
# The oneof's members are one field ("payload") in both models.
ONEOFS = {"Event": "payload"}


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _proto_fields(desc: Descriptor) -> list[str]:
    names: list[str] = []
    for f in desc.fields:
        oneof = f.containing_oneof
        name = oneof.name if oneof is not None and ONEOFS.get(desc.name) == oneof.name else f.name
        if name not in names:
            names.append(name)
    return names


def _messages() -> dict[str, Descriptor]:
    return {name: d for fd in FILES for name, d in fd.message_types_by_name.items()}


def _rpcs() -> list[tuple[str, Descriptor, Descriptor]]:
    return [
        (method.name, method.input_type, method.output_type)
        for fd in FILES
        for service in fd.services_by_name.values()
        for method in service.methods
    ]


def _is_rpc_message(name: str) -> bool:
    return any(name in (i.name, o.name) for _, i, o in _rpcs())


def test_every_message_is_mapped() -> None:
    """A new message that is not an RPC's request or response needs models on both sides."""
    unmapped = [n for n in _messages() if n not in MODELS and not _is_rpc_message(n)]
    assert unmapped == [], "add these to MODELS with their server and client models"
    assert not set(MODELS) - set(_messages()), "MODELS names a message the proto lacks"


# Models whose shared fields may come in another order on the server, each deliberate (every
# converter builds by keyword, so order only matters to positional callers of one side).
ORDER_EXCEPTIONS = {
    "Event": "the core's log builds events positionally as (seq, time, ...) on its hot path",
    "Profile": "the core's config object; it follows the config file's order",
    "RuntimeInfo": "the core's snapshot; it groups what the proto splits into sub-messages",
}


@pytest.mark.parametrize(
    "name", sorted(n for n, (s, c_) in MODELS.items() if s and c_ and n not in ORDER_EXCEPTIONS)
)
def test_shared_fields_are_in_the_same_order(name: str) -> None:
    """A positional construction means the same on both sides (TranscriptEntry once differed)."""
    server_cls, client_cls = MODELS[name]
    assert server_cls is not None
    assert client_cls is not None
    server, client = _fields(server_cls), _fields(client_cls)
    shared = set(server) & set(client)
    assert [f for f in server if f in shared] == [f for f in client if f in shared], name


@pytest.mark.parametrize("name", sorted(MODELS))
def test_fields_agree(name: str) -> None:
    proto = _proto_fields(_messages()[name])
    server_cls, client_cls = MODELS[name]
    missing = PROTO_ONLY.get(name, {})
    for side, cls, only in (
        ("server", server_cls, SERVER_ONLY.get(name, {})),
        ("client", client_cls, CLIENT_ONLY.get(name, {})),
    ):
        if cls is None:
            continue
        expected = [f for f in proto if side not in missing.get(f, ())]
        got = [f for f in _fields(cls) if f not in only]
        assert sorted(got) == sorted(expected), f"{side} {cls.__qualname__} vs proto {name}"
        stale = set(only) - set(_fields(cls))
        assert not stale, f"exceptions name fields {cls.__qualname__} no longer has: {stale}"


def test_the_listed_exceptions_are_still_true() -> None:
    assert not hasattr(engine.Usage, "__dataclass_fields__") or "total_tokens" not in _fields(
        engine.Usage
    )
    assert isinstance(engine.Usage.total_tokens, property)
    for name, fields in PROTO_ONLY.items():
        assert set(fields) <= set(_proto_fields(_messages()[name])), name


# A page that carries a cursor after its page fields, modelled by a Page subclass on both sides.
PAGE_EXTRAS: dict[str, tuple[tuple[type, type], list[str]]] = {
    "GetTranscriptResponse": ((m.TranscriptPage, c.TranscriptPage), ["resume_after_seq"]),
}


def _page_tail(name: str) -> list[str]:
    return ["next_page_token", "total_size", *(PAGE_EXTRAS[name][1] if name in PAGE_EXTRAS else [])]


def test_server_and_client_pages_agree() -> None:
    # every List* response is (repeated items, next_page_token, total_size): one Page shape
    assert _fields(m.Page) == _fields(c.Page) == ["items", "next_page_token", "total_size"]
    for (server, client), extra in PAGE_EXTRAS.values():
        assert _fields(server) == _fields(client) == [*_fields(m.Page), *extra]
    for _, _, out in _rpcs():
        names = [f.name for f in out.fields]
        if "next_page_token" in names:
            assert names[1:] == _page_tail(out.name), out.name
            assert out.fields[0].is_repeated, out.name


# --- enums ------------------------------------------------------------------------------------


def _enum(desc: EnumDescriptor) -> set[str]:
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", desc.name).upper() + "_"
    return {v.name.removeprefix(prefix) for v in desc.values} - {"UNSPECIFIED"}


ENUMS: dict[str, tuple[type[enum.Enum], type[enum.Enum]]] = {
    "WorkerState": (m.WorkerState, c.WorkerState),
    "RunState": (m.RunState, c.RunState),
    "BusyPolicy": (m.BusyPolicy, c.BusyPolicy),
    "MountMode": (m.MountMode, c.MountMode),
    "Role": (engine.Role, c.Role),
    "DiagnosticLevel": (m.DiagnosticLevel, c.DiagnosticLevel),
    "RuntimeState": (rt.RuntimeState, c.RuntimeState),
    "StoreState": (rt.StoreState, c.StoreState),
}


def test_every_enum_agrees() -> None:
    enums = {name: d for fd in FILES for name, d in fd.enum_types_by_name.items()}
    assert set(enums) == set(ENUMS), "add the enum to ENUMS with its server and client enums"
    for name, desc in enums.items():
        server, client = ENUMS[name]
        assert {x.name for x in server} == _enum(desc), f"server {name}"
        # UNSPECIFIED is the client's "unset or newer than me"; BusyPolicy is only sent
        client_names = {x.name for x in client} - {"UNSPECIFIED"}
        assert client_names == _enum(desc), f"client {name}"


# --- the event payload oneof ------------------------------------------------------------------


def test_event_payloads_agree() -> None:
    event = _messages()["Event"]
    members = {f.name: f.message_type.name for f in event.oneofs_by_name["payload"].fields}
    client_kinds = {cls.KIND: cls for cls in typing.get_args(c.Payload)}
    assert set(members) | {"unknown"} == set(client_kinds)
    for kind, message in members.items():
        assert MODELS[message][1] is client_kinds[kind], kind
    # every server payload type is a oneof member (the heartbeat is built by the stream)
    server_types = set(typing.get_args(m.Payload))
    assert server_types == {MODELS[msg][0] for k, msg in members.items() if k != "heartbeat"}


# --- RPCs: request fields are the methods' parameters ------------------------------------------

METHOD = {
    "SubscribeEvents": "subscribe",
    "SubscribeEventBatches": "subscribe",
    "PutConfigBundle": "put_bundle",
    "GetConfigBundle": "get_bundle",
    "ListConfigBundles": "list_bundles",
    "DeleteConfigBundle": "delete_bundle",
}
# RPCs the core serves from one of its parts rather than from Runtime itself (rpc -> class).
CORE = {
    m_: rt.ConfigBundles
    for m_ in ("PutConfigBundle", "GetConfigBundle", "ListConfigBundles", "DeleteConfigBundle")
}
# Parameters a method has beyond its request fields, each deliberate.
EXTRA_PARAMETERS = {
    # how the client follows a stream across cuts: not part of the request
    "subscribe": {
        "resume", "include_heartbeats", "max_reconnects", "backoff", "batched", "on_retry",
    },
}  # fmt: skip
# Responses that wrap one model (checked as that model) or nothing.
ENVELOPES = {
    "GetRuntimeResponse", "ListProfilesResponse", "GetWorkerResponse", "StopWorkerResponse",
    "DeleteWorkerResponse", "CancelRunResponse", "GetRunResponse", "EventBatch",
    "DeleteConfigBundleResponse",
}  # fmt: skip


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@pytest.mark.parametrize("rpc", sorted({r[0] for r in _rpcs()}))
def test_request_fields_are_the_parameters(rpc: str) -> None:
    _, request, response = next(r for r in _rpcs() if r[0] == rpc)
    name = METHOD.get(rpc, _snake(rpc))
    fields = {f.name for f in request.fields}
    core: type = CORE.get(rpc, rt.Runtime)
    for cls in (c.RuntimeClient, EmbeddedRuntime, core):
        params = set(inspect.signature(getattr(cls, name)).parameters) - {"self"}
        if cls is core:  # the core takes the request; how a client follows it is not its
            assert params == fields, f"{cls.__name__}.{name}"
        else:
            assert params == fields | EXTRA_PARAMETERS.get(name, set()), f"{cls.__name__}.{name}"
    # and the response is a known shape
    out = [f.name for f in response.fields]
    assert (
        response.name in ENVELOPES
        or response.name in MODELS
        or out[1:] == _page_tail(response.name)
    ), response.name
    if response.name in ENVELOPES:
        assert len(out) <= 1, response.name


def test_the_walk_can_fail() -> None:
    """A field the client has and the proto lacks is seen (the checks above are not vacuous)."""

    @dataclasses.dataclass
    class Drifted:
        code: str
        message: str
        details: str

    proto = _proto_fields(_messages()["RunError"])
    assert sorted(_fields(Drifted)) != sorted(proto)
