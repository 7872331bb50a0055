"""The transcript window's structure (runtime._transcripts): trimming a full window moves a start
offset and compacts its lists rarely, instead of copying them on every append.

- Against a naive model (each window a plain suffix of its transcript, the cache's LRU eviction
  written out longhand) over thousands of random appends, evictions, pages and history reads on
  several workers: the window's first index, its bytes (each and all together), its entries,
  messages and sizes, its pages and its histories never differ from the model, and what it keeps
  beyond its count (the trimmed prefix not yet compacted) stays under a quarter of it.
- Runs whose context policy selects from a trimmed window (a budget of 40 estimated tokens, a
  window of about 16 entries) send what a fresh selection picks, run after run, through
  compactions.
- Appends to a full window copy a bounded number of list items per append, the same for a window
  of 500 entries and one of 5,000 (the list-copying window copied the whole window each time).

The windows are the Runtime's own (``Runtime._transcripts``), over a real memory store that holds
every entry, so a page or history that reaches before a window is read from the store.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import engine
from runtime_server.model import Limits, TranscriptEntry
from runtime_server.runtime import Runtime, parse_config
from runtime_server.store import AppendTranscript, MemoryStore, entry_bytes


async def _committed() -> None:
    return None  # the memory store has every entry as soon as it is written


def _transcripts(window_bytes: int, cache_bytes: int) -> tuple[Any, MemoryStore]:
    store = MemoryStore()
    limits = replace(
        Limits(), transcript_window_bytes=window_bytes, transcript_cache_bytes=cache_bytes
    )
    return Runtime(store=store, limits=limits)._transcripts, store


def _entry(worker_id: str, index: int, text: str) -> TranscriptEntry:
    role = engine.Role.USER if index % 2 == 0 else engine.Role.ASSISTANT
    return TranscriptEntry(
        worker_id=worker_id,
        index=index,
        run_id=f"run-{index // 2}",
        created_at=0.0,
        message=engine.Message(role, text),
    )


class _Model:
    """Each window as the suffix ``entries[base:]`` of its whole transcript, trimmed and evicted
    by the rules the window documents, with nothing clever."""

    def __init__(self, window_bytes: int, cache_bytes: int) -> None:
        self.window_bytes, self.cache_bytes = window_bytes, cache_bytes
        self.entries: dict[str, list[TranscriptEntry]] = {}
        self.sizes: dict[str, list[int]] = {}
        self.base: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self.lru: list[str] = []  # least recently grown first

    def open(self, wid: str) -> None:
        self.entries[wid], self.sizes[wid], self.base[wid], self.bytes[wid] = [], [], 0, 0
        self.lru.append(wid)

    def total(self) -> int:
        return sum(self.bytes.values())

    def trim(self, wid: str, max_bytes: int) -> None:
        while self.bytes[wid] > max_bytes:
            self.bytes[wid] -= self.sizes[wid][self.base[wid]]
            self.base[wid] += 1

    def grew(self, wid: str) -> None:
        self.lru.remove(wid)
        self.lru.append(wid)
        self.trim(wid, self.window_bytes)
        turns = len(self.lru)
        while self.total() > self.cache_bytes and turns > 0:
            turns -= 1
            oldest = self.lru.pop(0)
            if oldest != wid:
                self.trim(oldest, 0)
            self.lru.append(oldest)
        if self.total() > self.cache_bytes:
            self.trim(wid, 0)

    def append(self, entry: TranscriptEntry) -> None:
        wid = entry.worker_id
        size = entry_bytes(entry)
        self.entries[wid].append(entry)
        self.sizes[wid].append(size)
        self.bytes[wid] += size
        self.grew(wid)

    def evict_all(self) -> None:
        for wid in self.lru:
            self.trim(wid, 0)

    def history(self, wid: str) -> list[engine.Message]:
        everything = [e.message for e in self.entries[wid]]
        if self.base[wid] and sum(self.sizes[wid]) <= self.window_bytes:  # adopted again
            self.base[wid], self.bytes[wid] = 0, sum(self.sizes[wid])
            self.grew(wid)
        return everything


def _check(window: Any, transcripts: Any, model: _Model, rng: random.Random) -> None:
    wid = window.worker_id
    base = model.base[wid]
    assert (window.base, window.bytes, len(window)) == (
        base,
        model.bytes[wid],
        len(model.entries[wid]),
    )
    dead = window.dead
    assert window.origin == base - dead
    assert window.entries[dead:] == model.entries[wid][base:]
    assert window.sizes[dead:] == model.sizes[wid][base:]
    messages = [e.message for e in model.entries[wid][base:]]
    live = window.live_messages()
    assert len(live) == len(messages)
    assert list(live) == messages
    if messages:
        i = rng.randrange(-len(messages), len(messages))
        assert live[i] is messages[i]
        a, b = sorted(rng.randrange(len(messages) + 1) for _ in range(2))
        assert live[a:] == messages[a:]
        assert live[a:b] == messages[a:b]
    assert transcripts.bytes == model.total()
    # The trimmed prefix kept beyond the window's count: under a quarter of it, by count and bytes.
    live_count = len(window.entries) - dead
    assert dead == 0 or (4 * dead < live_count and 4 * window.dead_bytes < window.bytes)
    assert window.dead_bytes == sum(window.sizes[:dead])


async def test_windows_match_a_naive_model_over_random_operations() -> None:
    for seed in range(3):
        rng = random.Random(seed)
        window_bytes = rng.choice([3_000, 20_000, 60_000])
        cache_bytes = rng.choice([2 * window_bytes, 5 * window_bytes])
        transcripts, store = _transcripts(window_bytes, cache_bytes)
        model = _Model(window_bytes, cache_bytes)
        windows = {}
        seen = {"trimmed prefix": 0, "page from the store": 0, "history adopted": 0}
        for n in range(4):
            wid = f"w{seed}-{n}"
            windows[wid] = transcripts.open(wid)
            model.open(wid)
        for step in range(3_000):
            wid = rng.choice(list(windows))
            window = windows[wid]
            op = rng.random()
            if op < 0.01:  # a new worker: a short transcript, adopted whole after an eviction
                wid = f"w{seed}-{len(windows)}"
                windows[wid] = transcripts.open(wid)
                model.open(wid)
            elif op < 0.85:
                text = "x" * rng.choice([0, 5, 50, 400, rng.randrange(6_000)])
                entry = _entry(wid, len(window), text)
                store.write([], [AppendTranscript(entry)])
                window.append(entry)
                model.append(entry)
            elif op < 0.87:
                transcripts.evict_all()
                model.evict_all()
            elif op < 0.95:
                total = len(model.entries[wid])
                start, size = rng.randrange(total + 2), rng.randrange(1, 40)
                seen["page from the store"] += start < window.base
                page = await transcripts.page(window, start, size, _committed)
                assert page == model.entries[wid][start : start + size], (seed, step)
            else:
                before = window.base
                history = await transcripts.history(window, _committed)
                assert list(history) == model.history(wid), (seed, step)
                seen["history adopted"] += before > 0 and window.base == 0
                transcripts.release(wid)
            for each in windows.values():
                _check(each, transcripts, model, rng)
                seen["trimmed prefix"] += each.dead > 0
        assert all(seen.values()), seen  # every path was taken


def _copies_per_append(window_entries: int) -> float:
    """Fill a window with ``window_entries`` entries, then append 4 times as many: list items
    copied (into a new list) per append."""
    text = "y" * 100
    size = entry_bytes(_entry("w", 0, text))
    transcripts, _ = _transcripts(window_entries * size, 1 << 40)
    window = transcripts.open("w")
    for _ in range(window_entries):
        window.append(_entry("w", len(window), text))
    assert window.base == 0
    assert window.bytes == window_entries * size
    copied, appends = 0, 4 * window_entries
    for _ in range(appends):
        held = (window.entries, window.messages, window.sizes)
        window.append(_entry("w", len(window), text))
        assert window.bytes == window_entries * size  # one in, one out
        for old, new in zip(held, (window.entries, window.messages, window.sizes), strict=True):
            if new is not old:
                copied += len(new)
    return copied / appends


def test_appends_to_a_full_window_do_not_copy_it() -> None:
    small, large = _copies_per_append(500), _copies_per_append(5_000)
    # 3 lists compacted when the trimmed quarter is reached: about 3 x 4 items per append, the
    # same for both sizes (copying the window on each append would be 3 x 500 and 3 x 5,000).
    assert small <= 15, small
    assert large <= 15, large


async def test_runs_select_their_context_from_a_trimmed_window() -> None:
    """The running fit reads a window through its trimmed prefix (absolute index minus the
    window's origin): a wrong offset counts or sends other messages. The echo provider counts a
    prompt's words as its input tokens, so each run's count must be that of what
    :func:`engine.select` picks from the whole history."""
    policy = engine.ContextPolicy(max_tokens=40)
    config = parse_config(
        {"profiles": {"small": {"provider": "builtin", "model": "echo", "context_max_tokens": 40}}}
    )
    limits = replace(Limits(), transcript_window_bytes=16 * 460)
    async with Runtime(config=config, limits=limits) as rt:
        wid = (await rt.create_worker(profile="small")).worker.worker_id
        window, trimmed = rt._host(wid).transcript, 0
        mirror: list[engine.Message] = []
        for k in range(80):
            text = " ".join(["word"] * (1 + (k * 7) % 11))
            mirror.append(engine.Message(engine.Role.USER, text))
            accepted = await rt.send_input(wid, text)
            run = await rt.wait_run(accepted.run.run_id)
            chosen = engine.select(mirror, policy).of(mirror)
            assert run.usage.input_tokens == sum(len(m.text.split()) for m in chosen), k
            mirror.append(engine.Message(engine.Role.ASSISTANT, text))  # the echo's answer
            trimmed += window.dead > 0
        assert window.base > 100
        assert trimmed > 20
