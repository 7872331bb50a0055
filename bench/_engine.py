"""Section ``engine`` (issue 3).

* Parsing: every recorded stream in ``../shared/fixtures/provider-streams`` is answered from
  memory by an httpx ``MockTransport`` (the same bytes, cut into the same 1 KiB chunks, for both
  sides; the anthropic SDK needs its ``httpx2`` fork's MockTransport) and read to the final
  message: by the engine (``OpenAIChatProvider`` / ``AnthropicProvider`` -> ``Accumulator``) and
  by the official SDK's own stream helper (``client.chat.completions.stream(...)`` then
  ``get_final_completion()`` / ``client.messages.stream(...).get_final_message()``). Both build
  their request and go through httpx the same way; the figure is recorded streams read per
  second, per wire format.
* llama.cpp turn (``engine.testing.LlamaServer``, SmolLM2-135M, 1 thread, temperature 0, 64
  tokens): wall time of ``engine.run_turn`` vs a raw ``httpx`` streaming POST of the same body
  (every byte read, nothing parsed), alternated request by request. Wall time is dominated by
  llama.cpp's generation, which is noisy here, so the engine's own cost is also reported as the
  extra CPU time of the event-loop thread (llama.cpp runs in native threads). Skipped, with a
  line saying why, when llama.cpp or the model is not installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

import engine
from bench._common import SHARED, Row, say, show
from engine.testing import LlamaServer, llama_unavailable

SECTION = "engine"
STREAMS = SHARED / "fixtures" / "provider-streams"
CHUNK = 1024
REQUEST = engine.ModelRequest(model="m", messages=(engine.Message(engine.Role.USER, "hi"),))


class _Body:
    """An async byte stream of ``data`` in ``CHUNK``-byte pieces (for httpx and httpx2)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        data = self._data
        for i in range(0, len(data), CHUNK):
            yield data[i : i + CHUNK]

    async def aclose(self) -> None:
        return None


def mock_client(data: dict[str, bytes], http: Any = httpx) -> tuple[Any, list[str]]:
    """A client of the ``http`` module (httpx, or httpx2 for the anthropic SDK) whose every
    request is answered from memory with the stream named in ``current[0]``."""
    current = [""]
    stream_type = type("Body", (_Body, http.AsyncByteStream), {})

    def handler(request: Any) -> Any:
        return http.Response(
            200, headers={"content-type": "text/event-stream"}, stream=stream_type(data[current[0]])
        )

    return http.AsyncClient(transport=http.MockTransport(handler)), current


def fixtures(wire: str) -> dict[str, bytes]:
    pattern = "openai-python/*.sse" if wire == "openai" else "anthropic-sdk-python/*.txt"
    return {p.name: p.read_bytes() for p in sorted(STREAMS.glob(pattern))}


async def engine_reader(wire: str, data: dict[str, bytes]) -> Callable[[int], Awaitable[int]]:
    client, current = mock_client(data)
    provider: engine.OpenAIChatProvider | engine.AnthropicProvider
    if wire == "openai":
        provider = engine.OpenAIChatProvider(client, "http://bench.invalid/v1")
    else:
        provider = engine.AnthropicProvider(client, "http://bench.invalid")

    async def read(rounds: int) -> int:
        n = 0
        for _ in range(rounds):
            for name in data:
                current[0] = name
                acc = engine.Accumulator()
                async for event in provider.stream(REQUEST):
                    acc.add(event)
                acc.message()
                n += 1
        return n

    return read


async def sdk_reader(wire: str, data: dict[str, bytes]) -> Callable[[int], Awaitable[int]]:
    import anthropic
    import openai

    messages: Any = [{"role": "user", "content": "hi"}]
    if wire == "openai":
        client, current = mock_client(data)
        oai = openai.AsyncOpenAI(
            base_url="http://bench.invalid/v1", api_key="x", max_retries=0, http_client=client
        )

        async def read_one() -> None:
            async with oai.chat.completions.stream(model="m", messages=messages) as stream:
                async for _ in stream:
                    pass
                with contextlib.suppress(openai.LengthFinishReasonError):
                    await stream.get_final_completion()

    else:
        import httpx2  # the anthropic SDK's own fork of httpx: it refuses an httpx client

        client, current = mock_client(data, httpx2)
        ant = anthropic.AsyncAnthropic(
            base_url="http://bench.invalid", api_key="x", max_retries=0, http_client=client
        )

        async def read_one() -> None:
            async with ant.messages.stream(model="m", max_tokens=64, messages=messages) as stream:
                await stream.get_final_message()

    async def read(rounds: int) -> int:
        n = 0
        for _ in range(rounds):
            for name in data:
                current[0] = name
                # finish_length: the SDK raises after reading the whole stream
                with contextlib.suppress(openai.LengthFinishReasonError):
                    await read_one()
                n += 1
        return n

    return read


async def parsing(quick: bool, reps: int) -> list[Row]:
    rows = []
    rounds = 10 if quick else 40
    for wire in ("openai", "anthropic"):
        data = fixtures(wire)
        if not data:
            say(f"  [{SECTION}] no recorded {wire} streams in {STREAMS}: skipped")
            continue
        size = sum(len(b) for b in data.values())
        row = Row(SECTION, f"parse {len(data)} recorded {wire} streams: engine vs SDK",
                  "streams/s", target=3.0,
                  note=f"{len(data)} files, {size / 1e3:.0f} kB, {CHUNK}-byte chunks, httpx "
                  f"MockTransport for both; each file x{rounds} per repetition")  # fmt: skip
        sdk = await sdk_reader(wire, data)
        eng = await engine_reader(wire, data)
        await sdk(1)  # warm up (imports, pydantic models, caches)
        await eng(1)
        for rep in range(1, reps + 1):
            sdk_time = eng_time = 0.0
            count = 0
            for _ in range(4):  # alternate in slices so noise hits both
                start = time.perf_counter()
                count += await sdk(rounds // 4)
                sdk_time += time.perf_counter() - start
                start = time.perf_counter()
                await eng(rounds // 4)
                eng_time += time.perf_counter() - start
            row.baseline.append(count / sdk_time)
            row.product.append(count / eng_time)
            show(row, rep)
        rows.append(row)
    return rows


async def llama_overhead(quick: bool, reps: int) -> list[Row]:
    reason = llama_unavailable()
    if reason is not None:
        say(f"  [{SECTION}] llama.cpp turn skipped: {reason}")
        return [Row(SECTION, f"llama.cpp turn overhead: skipped ({reason})", "", kind="info")]
    row = Row(SECTION, "llama.cpp turn wall time: engine vs raw httpx", "s", target=1.05,
              direction="max", note="SmolLM2-135M, 1 thread, temperature 0, max_tokens 64, "
              "OpenAI wire, same body; ratio = engine/raw (<= 1.05: <= 5% added)")  # fmt: skip
    cpu_row = Row(SECTION, "llama.cpp turn: engine CPU added, % of raw wall", "%", kind="abs",
                  target=5.0, direction="max", note="(engine loop-thread CPU - raw httpx "
                  "loop-thread CPU) / raw wall time, per alternated pair: the engine's own cost, "
                  "free of llama.cpp's generation noise")  # fmt: skip
    pairs = 4 if quick else 8
    loop = asyncio.get_running_loop()
    llama = await loop.run_in_executor(None, LlamaServer().start)
    try:
        # No keep-alive: llama.cpp drops idle pooled connections, and a request on a dropped one
        # fails (the engine would retry it, the raw side not). A loopback connect per request
        # costs both sides the same ~0.1 ms.
        no_pool = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=no_pool) as client:
            provider = engine.OpenAIChatProvider(client, llama.openai_base_url)
            config = engine.TurnConfig(model=llama.model_name, max_tokens=64, temperature=0.0)
            history = [
                engine.Message(engine.Role.USER, "Write a short story about a lighthouse keeper.")
            ]
            body = provider.build_body(
                engine.ModelRequest(
                    model=config.model,
                    messages=tuple(history),
                    max_tokens=config.max_tokens,
                    temperature=config.temperature,
                )
            )
            url = llama.openai_base_url + "/chat/completions"
            deltas: list[int] = []

            async def raw() -> tuple[float, float]:
                cpu, start = time.thread_time(), time.perf_counter()
                async with client.stream(
                    "POST", url, json=body, headers={"accept": "text/event-stream"}
                ) as response:
                    async for _ in response.aiter_bytes():
                        pass
                return time.perf_counter() - start, time.thread_time() - cpu

            async def turn() -> tuple[float, float]:
                count = 0

                def emit(event: engine.TurnEvent) -> None:
                    nonlocal count
                    count += isinstance(event, engine.TextDelta)

                cpu, start = time.thread_time(), time.perf_counter()
                await engine.run_turn(provider, config, history, emit=emit)
                elapsed = time.perf_counter() - start, time.thread_time() - cpu
                deltas.append(count)
                return elapsed

            await raw()  # warm up: model load into cache, connection
            await turn()
            for rep in range(1, reps + 1):
                raw_t: list[float] = []
                eng_t: list[float] = []
                added: list[float] = []
                for i in range(pairs):
                    if i % 2 == 0:
                        (r_wall, r_cpu), (e_wall, e_cpu) = await raw(), await turn()
                    else:
                        (e_wall, e_cpu), (r_wall, r_cpu) = await turn(), await raw()
                    raw_t.append(r_wall)
                    eng_t.append(e_wall)
                    added.append((e_cpu - r_cpu) / r_wall * 100)
                row.baseline.append(statistics.median(raw_t))
                row.product.append(statistics.median(eng_t))
                cpu_row.product.append(statistics.median(added))
                show(row, rep)
                show(cpu_row, rep)
            row.note += f"; {statistics.median(deltas):.0f} text deltas per turn"
    finally:
        await loop.run_in_executor(None, llama.close)
    return [row, cpu_row]


async def run(quick: bool) -> list[Row]:
    reps = 3
    rows = await parsing(quick, reps)
    try:
        rows += await llama_overhead(quick, reps)
    except Exception as exc:  # keep the parsing figures
        say(f"  [{SECTION}] llama.cpp turn failed: {type(exc).__name__}: {exc}")
        rows.append(Row(SECTION, f"llama.cpp turn: failed ({type(exc).__name__})", "", kind="info"))
    return rows
