"""Issue 13 items 1-3 through a real gRPC server and the real client: the ConfigService (put, get,
list, delete), what bundle content is refused (naming the field and line), and how CreateWorker
resolves a bundle's profile (each error with its reason; the run uses the bundle's prompt)."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import pytest

from engine.testing import LoopbackServer, RecordedRequest, Reply
from runtime_client import (
    ConfigBundleInUse,
    ConfigBundleInvalid,
    ConfigBundleNotFound,
    ConfigBundleRef,
    DigestMismatch,
    IdempotencyConflict,
    InvalidArgument,
    ProfileNotFound,
    ProviderNotAvailable,
    ResourceExhausted,
    RunState,
    TooManyConfigBundles,
)
from runtime_server.model import Limits

if TYPE_CHECKING:
    from serving import ServeFactory

BUNDLE = b"""\
# a team's profiles
[prompts]
terse = "You are terse: one sentence."

[profiles.helper]
provider = "builtin"
model = "echo"
prompt = "terse"
tools = ["clock"]

[profiles.plain]
provider = "builtin"
model = "echo"
system_prompt = "Plain."
"""


def sha(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


# --- ConfigService --------------------------------------------------------------------------


async def test_put_is_content_addressed_and_idempotent(serve: ServeFactory) -> None:
    client = (await serve()).client
    put = await client.put_bundle("team", BUNDLE, annotations={"source": "git:abc"})
    assert put.created
    b = put.bundle
    assert (b.id, b.digest, b.size_bytes) == ("team", sha(BUNDLE), len(BUNDLE))
    assert b.media_type == "application/vnd.worker-runtime.bundle.v1+toml"
    assert b.profiles == ("helper", "plain")
    assert dict(b.annotations) == {"source": "git:abc"}
    assert b.created_at > 0

    # the identical bytes again: nothing new (the first put's metadata stays)
    again = await client.put_bundle("team", BUNDLE, annotations={"other": "x"})
    assert not again.created
    assert again.bundle == b
    # a second version under the same id; one byte differs, so does the digest
    v2 = BUNDLE.replace(b"one sentence", b"two sentences")
    second = await client.put_bundle("team", v2, expected_digest=sha(v2))
    assert second.created
    assert second.bundle.digest == sha(v2)
    # the same bytes under another id are another bundle
    await client.put_bundle("other", BUNDLE)

    page = await client.list_bundles()
    assert [(x.id, x.digest) for x in page.items] == sorted(
        [("team", sha(BUNDLE)), ("team", sha(v2)), ("other", sha(BUNDLE))]
    )
    assert page.total_size == 3
    versions = await client.list_bundles(id="team")
    assert {x.digest for x in versions.items} == {sha(BUNDLE), sha(v2)}
    # paged
    seen, token = [], ""
    while True:
        p = await client.list_bundles(page_size=1, page_token=token)
        seen += [(x.id, x.digest) for x in p.items]
        token = p.next_page_token
        if not token:
            break
    assert seen == [(x.id, x.digest) for x in page.items]

    got = await client.get_bundle("team", sha(BUNDLE))
    assert got.bundle == b
    assert got.content == b""
    assert (await client.get_bundle("team", sha(BUNDLE), include_content=True)).content == BUNDLE


async def test_wrong_expected_digest_is_refused_with_the_computed_one(serve: ServeFactory) -> None:
    client = (await serve()).client
    with pytest.raises(DigestMismatch) as info:
        await client.put_bundle("team", BUNDLE, expected_digest="sha256:" + "0" * 64)
    assert info.value.computed_digest == sha(BUNDLE)
    assert info.value.field == "expected_digest"
    assert (await client.list_bundles()).total_size == 0


async def test_get_and_delete_need_a_stored_bundle_and_a_digest(serve: ServeFactory) -> None:
    client = (await serve()).client
    with pytest.raises(ConfigBundleNotFound) as nf:
        await client.get_bundle("team", sha(BUNDLE))
    assert (nf.value.bundle_id, nf.value.digest) == ("team", sha(BUNDLE))
    with pytest.raises(ConfigBundleNotFound):
        await client.delete_bundle("team", sha(BUNDLE))
    with pytest.raises(InvalidArgument) as info:
        await client.get_bundle("team", "")
    assert info.value.field == "digest"
    for bad in ("", "../etc", "a b", "-x", "x" * 129):
        with pytest.raises(InvalidArgument) as info:
            await client.put_bundle(bad, BUNDLE)
        assert info.value.field == "id"


async def test_get_runtime_reports_the_bundle_limits(serve: ServeFactory) -> None:
    info = await (await serve()).client.get_runtime()
    lim = info.limits
    assert (lim.max_bundle_bytes, lim.max_bundles) == (256 * 1024, 1000)
    assert (lim.max_bundle_profiles, lim.max_bundle_id_chars) == (64, 128)
    assert "config_bundles" in info.capabilities.features


async def test_bundle_count_and_profile_count_limits(serve: ServeFactory) -> None:
    client = (await serve(limits=Limits(max_bundles=2, max_bundle_profiles=2))).client
    await client.put_bundle("a", BUNDLE)
    await client.put_bundle("b", BUNDLE)
    with pytest.raises(TooManyConfigBundles) as full:  # its own reason, like TOO_MANY_WORKERS
        await client.put_bundle("c", BUNDLE)
    assert isinstance(full.value, ResourceExhausted)
    assert full.value.reason == "TOO_MANY_CONFIG_BUNDLES"
    assert full.value.limit == 2
    await client.put_bundle("a", BUNDLE)  # already stored: not a new one
    three = BUNDLE + b'\n[profiles.third]\nprovider = "builtin"\nmodel = "echo"\n'
    await client.delete_bundle("b", sha(BUNDLE))
    with pytest.raises(ConfigBundleInvalid) as info:
        await client.put_bundle("c", three)
    assert info.value.field == "profiles"


# --- content: what a bundle may not carry ------------------------------------------------------

PROFILE = '[profiles.p]\nprovider = "builtin"\nmodel = "echo"\n'
# (case, content, field, line)
REFUSED: list[tuple[str, str, str, int]] = [
    ("api key field", PROFILE + 'api_key = "sk-live-123"\n', "profiles.p.api_key", 4),
    (
        "api key in options",
        PROFILE + 'description = "x"\noptions = { seed = 1, api_key_env = "K" }\n',
        "profiles.p.options.api_key_env",
        5,
    ),
    (
        "provider table",
        PROFILE + '\n[providers.mine]\nkind = "openai_chat"\n',
        "providers",
        5,
    ),
    ("base url", PROFILE + 'base_url = "http://10.0.0.1/v1"\n', "profiles.p.base_url", 4),
    ("absolute path", PROFILE + 'description = "/etc/passwd"\n', "profiles.p.description", 4),
    ("home path", PROFILE + 'prefill = "~/secrets.txt"\n', "profiles.p.prefill", 4),
    ("mount key", PROFILE + 'mounts = ["data"]\n', "profiles.p.mounts", 4),
    ("workspaces table", '[workspaces]\nallowed_roots = ["x"]\n\n' + PROFILE, "workspaces", 1),
    ("toml error", PROFILE + "temperature = = 1\n", "content", 4),
    # tomllib recurses per level: this raised RecursionError, answered INTERNAL
    ("nested too deeply", PROFILE + "x = " + "[" * 600 + "]" * 600 + "\n", "content", 0),
    ("unknown key", PROFILE + "\n\nshiny = true\n", "profiles.p.shiny", 6),
    ("bad type", PROFILE + 'max_tokens = "many"\n', "profiles.p.max_tokens", 4),
    ("no model", '[profiles.p]\nprovider = "builtin"\n', "profiles.p.model", 1),
    ("unknown prompt", PROFILE + 'prompt = "nope"\n', "profiles.p.prompt", 4),
    ("unknown tool", PROFILE + 'tools = ["clock", "shell"]\n', "profiles.p.tools[1]", 4),
    ("raised ceiling", PROFILE + "max_tool_rounds = 50\n", "profiles.p.max_tool_rounds", 4),
    (
        "example role",
        PROFILE
        + 'examples = [\n  { role = "user", text = "hi" },\n  { role = "robot", text = "x" },\n]\n',
        "profiles.p.examples[1].role",
        6,
    ),
    ("no profiles", '[prompts]\nx = "y"\n', "profiles", 0),
    # a "[" in a quoted key read as a list index: int("2K") raised, answered INTERNAL
    ("bracket in a key", '["x[2K]"]\nk = 1\n\n' + PROFILE, "x[2K]", 1),
]


@pytest.mark.parametrize(
    ("content", "field", "line"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
async def test_refused_content_names_the_field_and_line(
    serve: ServeFactory, content: str, field: str, line: int
) -> None:
    client = (await serve()).client
    with pytest.raises(ConfigBundleInvalid) as info:
        await client.put_bundle("bad", content.encode())
    assert (info.value.field, info.value.line) == (field, line), info.value.message
    assert "sk-live-123" not in info.value.message  # a refused secret is never echoed
    assert (await client.list_bundles()).total_size == 0


async def test_size_limit_is_exact(serve: ServeFactory) -> None:
    client = (await serve(limits=Limits(max_bundle_bytes=len(BUNDLE)))).client
    assert (await client.put_bundle("fits", BUNDLE)).created
    with pytest.raises(ConfigBundleInvalid) as info:
        await client.put_bundle("over", BUNDLE + b"\n")
    assert info.value.field == "content"
    assert str(len(BUNDLE)) in info.value.message


async def test_a_bundle_narrows_host_policy_never_widens_it(serve: ServeFactory) -> None:
    config: dict[str, Any] = {"capabilities": {"allowed": ["clock"]}}
    client = (await serve(config=config)).client
    assert (await client.put_bundle("ok", (PROFILE + 'tools = ["clock"]\n').encode())).created
    with pytest.raises(ConfigBundleInvalid) as info:
        await client.put_bundle("wide", (PROFILE + 'tools = ["read_file"]\n').encode())
    assert info.value.field == "profiles.p.tools[0]"
    assert "fs.read" in info.value.message


# --- CreateWorker with a bundle ----------------------------------------------------------------


async def test_create_errors_each_with_its_reason(serve: ServeFactory) -> None:
    client = (await serve()).client
    digest = (await client.put_bundle("team", BUNDLE)).bundle.digest
    other = (PROFILE.replace("builtin", "openai")).encode()
    other_digest = (await client.put_bundle("cloud", other)).bundle.digest

    with pytest.raises(InvalidArgument) as invalid:
        await client.create_worker(profile="helper", config_bundle=ConfigBundleRef("team", ""))
    assert invalid.value.field == "config_bundle.digest"
    with pytest.raises(ConfigBundleNotFound):
        await client.create_worker(
            profile="helper", config_bundle=ConfigBundleRef("team", sha(b"x"))
        )
    with pytest.raises(ProfileNotFound) as nf:
        await client.create_worker(profile="nope", config_bundle=ConfigBundleRef("team", digest))
    assert nf.value.metadata["bundle"] == f"team@{digest}"
    with pytest.raises(ProviderNotAvailable) as na:
        await client.create_worker(
            profile="p", config_bundle=ConfigBundleRef("cloud", other_digest)
        )
    assert na.value.provider == "openai"
    assert (await client.list_workers()).total_size == 0


async def test_idempotency_fingerprint_includes_the_bundle_ref(serve: ServeFactory) -> None:
    client = (await serve()).client
    d1 = (await client.put_bundle("team", BUNDLE)).bundle.digest
    d2 = (await client.put_bundle("team", BUNDLE + b"# v2\n")).bundle.digest
    first = await client.create_worker(
        profile="helper", config_bundle=ConfigBundleRef("team", d1), request_id="r1"
    )
    again = await client.create_worker(
        profile="helper", config_bundle=ConfigBundleRef("team", d1), request_id="r1"
    )
    assert again.worker.worker_id == first.worker.worker_id
    with pytest.raises(IdempotencyConflict):
        await client.create_worker(
            profile="helper", config_bundle=ConfigBundleRef("team", d2), request_id="r1"
        )
    assert (await client.list_workers()).total_size == 1


async def test_delete_is_refused_while_referenced_then_allowed(serve: ServeFactory) -> None:
    client = (await serve()).client
    digest = (await client.put_bundle("team", BUNDLE)).bundle.digest
    ref = ConfigBundleRef("team", digest)
    w1 = (await client.create_worker(profile="helper", config_bundle=ref)).worker
    w2 = (await client.create_worker(profile="plain", config_bundle=ref)).worker
    assert w1.tools == ("clock",)
    b = (await client.get_bundle("team", digest)).bundle
    assert b.referencing_workers == tuple(sorted([w1.worker_id, w2.worker_id]))
    assert b.referencing_worker_count == 2

    await client.stop_worker(w1.worker_id)  # a stopped worker keeps its data and its reference
    with pytest.raises(ConfigBundleInUse) as info:
        await client.delete_bundle("team", digest)
    assert info.value.worker_count == 2
    assert info.value.worker_ids == ",".join(sorted([w1.worker_id, w2.worker_id]))
    assert w1.worker_id in info.value.message
    assert w2.worker_id in info.value.message
    await client.delete_worker(w1.worker_id)
    with pytest.raises(ConfigBundleInUse):
        await client.delete_bundle("team", digest)
    await client.delete_worker(w2.worker_id)
    await client.delete_bundle("team", digest)
    with pytest.raises(ConfigBundleNotFound):
        await client.get_bundle("team", digest)
    with pytest.raises(ConfigBundleNotFound):
        await client.create_worker(profile="helper", config_bundle=ref)


def _echo_system_prompt(request: RecordedRequest) -> Reply:
    """An OpenAI-style provider whose answer is the system prompt it was sent."""
    messages = request.json()["messages"]
    system = next((m["content"] for m in messages if m["role"] == "system"), "<none>")
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": system}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    body = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"
    return Reply(body=body)


async def test_a_run_uses_the_bundles_prompt_on_the_hosts_provider(serve: ServeFactory) -> None:
    async with LoopbackServer(default=_echo_system_prompt) as provider:
        config: dict[str, Any] = {
            "providers": {
                "loop": {"kind": "openai_chat", "base_url": f"{provider.url}/v1", "max_retries": 0}
            },
            # a host profile of the same name: the bundle's wins for workers created from it
            "profiles": {"helper": {"provider": "loop", "model": "host", "system_prompt": "Host."}},
        }
        client = (await serve(config=config)).client
        bundle = BUNDLE.replace(
            b'provider = "builtin"\nmodel = "echo"\nprompt',
            b'provider = "loop"\nmodel = "m1"\nprompt',
        )
        digest = (await client.put_bundle("team", bundle)).bundle.digest
        w = (
            await client.create_worker(
                profile="helper", config_bundle=ConfigBundleRef("team", digest)
            )
        ).worker
        run = await client.wait_run(
            (await client.send_input(w.worker_id, "hi")).run.run_id, timeout=30
        )
        assert run.state is RunState.COMPLETED
        answer = (await client.get_transcript(w.worker_id)).items[-1].message.text
        assert answer == "You are terse: one sentence."
        assert provider.requests[-1].json()["model"] == "m1"
        host = (await client.create_worker(profile="helper")).worker  # the host's own profile
        await client.wait_run(
            (await client.send_input(host.worker_id, "hi")).run.run_id, timeout=30
        )
        assert (await client.get_transcript(host.worker_id)).items[-1].message.text == "Host."
