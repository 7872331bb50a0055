// The worker console: a vanilla ES module, no build step. Everything a model or a person wrote is
// put into the page with textContent, never innerHTML: a message is text, not markup.
//
// Gap-free attach: load the transcript (every page), then subscribe after the transcript's
// resume_after_seq. The EventSource's Last-Event-ID resumes after a cut; events at or below the
// last seq seen are dropped, and committed entries are keyed by their index, so nothing shows
// twice. Committed events are authoritative: MessageCommitted replaces the live text.

import { acquire, giveBack, onSlotLost } from "./slots.js";
import { bundleOptions, loadBundles, pickedProfile } from "./bundles.js";

const $ = (id) => document.getElementById(id);
const HEADERS = { "content-type": "application/json", "x-worker-console": "1" };
const LOG_MAX = 500;

const state = {
  runtimes: [],
  workers: [],
  workersTotal: 0, // GET /api/workers answers a page: the Companion, then the newest
  current: null, // {rid, wid}
  es: null,
  lastSeq: 0,
  entries: new Map(), // index -> element
  tools: new Map(), // call_id -> row
  run: null, // the run the badge shows
  epoch: 0, // bumped on every attach: late answers of an older attach are ignored
  ended: false, // the stream ended for good (event: end): no stream until the next attach
  sends: 0, // bumped on every send: only the latest one writes the composer's status
};

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

async function api(path, options = {}) {
  const init = { ...options, headers: options.body ? HEADERS : { "x-worker-console": "1" } };
  const resp = await fetch(path, init);
  const body = resp.status === 204 ? {} : await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error((body.error && body.error.message) || resp.statusText);
    err.status = resp.status;
    err.reason = body.error ? body.error.reason : "";
    err.metadata = body.error ? body.error.metadata : {};
    throw err;
  }
  return body;
}

const fmtTokens = (u) => (u ? `${u.input_tokens} in / ${u.output_tokens} out` : "–");

// --- runtimes and workers -------------------------------------------------------------------

function renderHealth() {
  const strip = $("health");
  strip.replaceChildren();
  for (const r of state.runtimes) {
    const chip = el("span", "chip", `${r.alias || r.runtime_id || "runtime"}: ${r.state}`);
    chip.dataset.state = r.state;
    chip.dataset.runtimeId = r.runtime_id || "";
    if (r.last_error) chip.title = r.last_error;
    strip.append(chip);
  }
}

function renderWorkers() {
  const list = $("worker-list");
  list.replaceChildren();
  for (const w of state.workers) {
    const li = el("li", "worker");
    li.dataset.workerId = w.worker.worker_id;
    li.dataset.runtimeId = w.runtime_id;
    if (w.companion) li.classList.add("companion");
    if (w.stale) li.classList.add("stale");
    const cur = state.current;
    if (cur && cur.wid === w.worker.worker_id) li.classList.add("selected");
    const a = el("a", "name", w.worker.display_name || w.worker.worker_id.slice(0, 8));
    a.href = `#/w/${encodeURIComponent(w.runtime_id)}/${encodeURIComponent(w.worker.worker_id)}`;
    li.append(a);
    const alias = runtimeAlias(w.runtime_id);
    const queued = w.worker.queued_runs ? ` · ${w.worker.queued_runs} queued` : "";
    li.append(el("div", "meta", `${alias} · ${w.worker.profile} · ${w.worker.state}${queued}`));
    li.append(el("div", "meta", `${w.worker.usage.total_tokens} tokens${w.stale ? " · stale" : ""}`));
    list.append(li);
  }
  const more = $("worker-list-more");
  more.hidden = state.workersTotal <= state.workers.length;
  more.textContent = `the newest ${state.workers.length} of ${state.workersTotal} workers`;
}

function runtimeAlias(rid) {
  const r = state.runtimes.find((x) => x.runtime_id === rid);
  return r ? r.alias || rid : rid;
}

function renderCreateForm() {
  const sel = $("create-runtime");
  const chosen = sel.value;
  sel.replaceChildren(el("option", "", "any (placed)"));
  sel.firstChild.value = "";
  for (const r of state.runtimes.filter((x) => x.runtime_id)) {
    const o = el("option", "", `${r.alias || r.runtime_id} (${r.state})`);
    o.value = r.runtime_id;
    sel.append(o);
  }
  sel.value = chosen;
  renderProfiles();
}

function renderProfiles() {
  const rid = $("create-runtime").value;
  const names = new Set();
  for (const r of state.runtimes) {
    if (!rid || r.runtime_id === rid) r.profiles.forEach((p) => names.add(p.name));
  }
  const sel = $("create-profile");
  const chosen = sel.value;
  sel.replaceChildren();
  for (const n of [...names].sort()) {
    const o = el("option", "", n);
    o.value = n;
    sel.append(o);
  }
  sel.append(...bundleOptions(rid));
  if ([...sel.options].some((o) => o.value === chosen)) sel.value = chosen;
}

async function refresh() {
  try {
    const [rt, ws] = await Promise.all([api("/api/runtimes"), api("/api/workers"), loadBundles(api)]);
    state.runtimes = rt.runtimes;
    state.workers = ws.workers;
    state.workersTotal = ws.total ?? ws.workers.length;
    renderHealth();
    renderWorkers();
    renderCreateForm();
    const cur = state.current && state.workers.find((w) => w.worker.worker_id === state.current.wid);
    if (cur) showWorker(cur.worker);
  } catch (err) {
    if (err.status === 401) showLogin();
  }
}

// --- console --------------------------------------------------------------------------------

function showWorker(w) {
  $("worker-name").textContent = w.display_name || w.worker_id;
  $("worker-runtime").textContent = runtimeAlias(state.current.rid);
  $("worker-profile").textContent = w.profile;
  $("worker-state").textContent = w.state;
  $("usage-total").textContent = fmtTokens(w.usage);
}

const RANK = { QUEUED: 0, RUNNING: 1, COMPLETED: 2, FAILED: 2, CANCELLED: 2, INTERRUPTED: 2 };

function setBadge(run) {
  // A late answer (the POST's "RUNNING" after the stream already said COMPLETED) never moves a
  // run's badge backwards.
  const cur = state.run;
  if (run && cur && cur.run_id === run.run_id && (RANK[run.state] ?? 0) < (RANK[cur.state] ?? 0)) return;
  state.run = run;
  const badge = $("run-badge");
  badge.textContent = run ? run.state : "no run";
  badge.dataset.state = run ? run.state : "";
  badge.dataset.runId = run ? run.run_id : "";
  const stop = run && run.error ? `${run.error.code}` : run && run.stop_reason ? run.stop_reason : "";
  $("run-stop").textContent = stop;
  $("cancel").disabled = !run || ["COMPLETED", "FAILED", "CANCELLED", "INTERRUPTED"].includes(run.state);
  if (run && run.usage) $("usage-run").textContent = fmtTokens(run.usage);
}

function clearLive() {
  const live = $("live");
  live.hidden = true;
  live.querySelector(".text").textContent = "";
  const r = live.querySelector(".reasoning");
  r.hidden = true;
  r.querySelector("pre").textContent = "";
}

function renderEntry(entry) {
  if (state.entries.has(entry.index)) return; // already shown (committed events are idempotent)
  const m = entry.message;
  const row = el("div", "entry");
  row.dataset.role = m.role;
  row.dataset.index = String(entry.index);
  row.dataset.seq = String(entry.seq);
  if (m.role === "TOOL") {
    row.classList.add("tool");
    row.append(el("span", "tool-name", m.tool_name || "tool"));
    row.append(el("pre", m.is_error ? "tool-result error" : "tool-result", m.text));
  } else {
    if (m.reasoning) {
      const d = el("details", "reasoning");
      d.append(el("summary", "", "reasoning"), el("pre", "", m.reasoning));
      row.append(d);
    }
    if (m.text || !m.tool_calls.length) row.append(el("div", "text", m.text));
    for (const call of m.tool_calls) {
      const t = el("div", "tool-call");
      t.append(el("span", "tool-name", call.name), el("code", "tool-args", call.arguments));
      row.append(t);
    }
    if (m.incomplete) row.append(el("div", "meta", `(${m.stop_reason || "incomplete"})`));
  }
  state.entries.set(entry.index, row);
  $("transcript").append(row);
  row.scrollIntoView({ block: "end" });
}

function logEvent(ev, label) {
  const log = $("event-log");
  log.append(el("li", "", `${ev.seq ?? ""} ${label}`));
  while (log.childElementCount > LOG_MAX) log.firstChild.remove();
}

function onEvent(ev) {
  if (ev.seq <= state.lastSeq) return; // seen already (a resume overlaps nothing, but be sure)
  state.lastSeq = ev.seq;
  logEvent(ev, ev.kind);
  const p = ev.payload;
  const live = $("live");
  switch (ev.kind) {
    case "input_committed":
      renderEntry(p.entry);
      break;
    case "text_delta":
      live.hidden = false;
      live.querySelector(".text").textContent += p.text;
      break;
    case "reasoning_delta": {
      live.hidden = false;
      const r = live.querySelector(".reasoning");
      r.hidden = false;
      r.querySelector("pre").textContent += p.text;
      break;
    }
    case "partial_discarded":
      clearLive();
      break;
    case "message_committed":
      clearLive();
      renderEntry(p.entry);
      break;
    case "tool_call_started": {
      const row = el("div", "entry tool pending");
      row.append(el("span", "tool-name", p.tool_name), el("code", "tool-args", p.arguments));
      state.tools.set(p.call_id, row);
      $("transcript").append(row);
      break;
    }
    case "tool_call_finished": {
      const row = state.tools.get(p.call_id);
      if (row) {
        row.classList.remove("pending");
        row.append(el("pre", p.is_error ? "tool-result error" : "tool-result", p.result));
      }
      break;
    }
    case "run_queued":
    case "run_started":
    case "run_finished":
      if (!state.run || state.run.run_id === p.run.run_id || ev.kind !== "run_queued") setBadge(p.run);
      if (ev.kind === "run_finished") {
        clearLive();
        refreshDetail();
        refresh();
      }
      break;
    case "usage_reported":
      $("usage-run").textContent = fmtTokens(p.usage);
      break;
    case "worker_state_changed":
      $("worker-state").textContent = p.state;
      break;
    default:
      break;
  }
}

// The worker as its runtime has it now (usage totals), not the registry's cached list.
async function refreshDetail() {
  if (!state.current) return;
  const { rid, wid } = state.current;
  try {
    const d = await api(`/api/runtimes/${encodeURIComponent(rid)}/workers/${encodeURIComponent(wid)}`);
    if (state.current && state.current.wid === wid) showWorker(d.worker);
  } catch (err) {
    // the runtime may be away: the list refresh shows its state
  }
}

async function loadTranscript(epoch) {
  $("transcript").replaceChildren();
  state.entries.clear();
  state.tools.clear();
  clearLive();
  const { rid, wid } = state.current;
  const base = `/api/runtimes/${encodeURIComponent(rid)}/workers/${encodeURIComponent(wid)}`;
  let token = "";
  let resume = 0;
  do {
    const page = await api(`${base}/transcript?page_token=${encodeURIComponent(token)}`);
    if (epoch !== state.epoch) return null;
    page.entries.forEach(renderEntry);
    token = page.next_page_token;
    resume = page.resume_after_seq;
  } while (token);
  return resume;
}

async function openStream(steal = false) {
  if (state.es || !state.current || state.ended) return;
  // A send (steal) during the 3-s retry's polite attempt must not be lost: it steals after it.
  if (state.opening) return void (state.stealNext ||= steal);
  state.opening = true;
  let got = false;
  try {
    got = (await acquire(steal)) || (state.stealNext && (await acquire(true)));
  } finally {
    state.opening = state.stealNext = false;
  }
  if (!got || state.es || !state.current) {
    if (!got) $("banner-paused").hidden = false;
    return;
  }
  $("banner-paused").hidden = true;
  const { rid, wid } = state.current;
  const url = `/api/runtimes/${encodeURIComponent(rid)}/workers/${encodeURIComponent(wid)}` +
    `/events?after_seq=${state.lastSeq}`;
  const es = new EventSource(url);
  state.es = es;
  es.onmessage = (m) => onEvent(JSON.parse(m.data));
  es.addEventListener("runtime", (m) => {
    const d = JSON.parse(m.data);
    logEvent({ seq: "" }, `runtime ${d.state}`);
    $("banner-runtime").hidden = d.state === "READY";
    if (d.previous) refresh(); // the health strip and the stale marks follow at once
  });
  es.addEventListener("reset", async (m) => {
    const d = JSON.parse(m.data);
    logEvent({ seq: d.last_seq }, "reset");
    $("banner-reset").hidden = false;
    const epoch = state.epoch;
    await loadTranscript(epoch);
    state.lastSeq = Math.max(state.lastSeq, d.last_seq);
  });
  es.addEventListener("end", (m) => streamEnded(m.data));
  es.onerror = () => {
    // CLOSED: the server refused (e.g. too many streams); retry ourselves from the last seq.
    if (es.readyState === EventSource.CLOSED && state.es === es) {
      state.es = null;
      setTimeout(() => { if (!state.es && !document.hidden && state.current) openStream(); }, 2000);
    }
  };
}

// Why a stream ended for good, for the person (the Backend's reasons: backend/_events.py).
const ENDED = {
  WORKER_DELETED: "This worker was deleted.",
  RUNTIME_IDENTITY_CHANGED:
    "Its runtime now answers as another runtime (a new data directory, or another server at " +
    "its address): this worker cannot be reached through it until the Backend's config is fixed.",
  STREAM_ENDED: "The event stream ended: open the worker again to follow it.",
};

// event: end. The stream is over: say why, and open none for this worker (the timers and focus
// would reopen it every few seconds, each ending at once) until it is opened again.
function streamEnded(data) {
  let d = {};
  try {
    d = JSON.parse(data);
  } catch (err) {
    // no reason given: the generic sentence
  }
  closeStream();
  if (d.reason === "SESSION_ENDED") return void showLogin();
  state.ended = true;
  $("banner-runtime").hidden = true;
  const banner = $("banner-ended");
  banner.textContent = ENDED[d.reason] || d.message || "The event stream ended.";
  banner.hidden = false;
}

function closeStream() {
  if (state.es) state.es.close();
  state.es = null;
  giveBack();
}

onSlotLost(() => {
  if (state.es) state.es.close();
  state.es = null;
  $("banner-paused").hidden = false;
});

async function attach(rid, wid) {
  closeStream();
  state.current = { rid, wid };
  const epoch = ++state.epoch;
  state.lastSeq = 0;
  state.run = null;
  state.ended = false;
  $("banner-ended").hidden = true;
  $("console").hidden = false;
  $("empty").hidden = true;
  $("banner-reset").hidden = true;
  $("banner-runtime").hidden = true;
  $("event-log").replaceChildren();
  $("composer-status").textContent = "";
  renderWorkers();
  const base = `/api/runtimes/${encodeURIComponent(rid)}/workers/${encodeURIComponent(wid)}`;
  try {
    const detail = await api(base);
    if (epoch !== state.epoch) return;
    showWorker(detail.worker);
    setBadge(detail.run || null);
    const resume = await loadTranscript(epoch);
    if (resume === null) return;
    state.lastSeq = resume;
    if (!document.hidden) openStream();
  } catch (err) {
    $("composer-status").textContent = err.message;
  }
}

// A send's idempotency key (a v4 UUID). crypto.randomUUID exists only in a secure context
// (HTTPS, localhost): a console opened over plain HTTP under another name or address (an
// allowed_hosts name, a LAN address with a token) has only getRandomValues, and calling
// randomUUID there failed every send.
function requestId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

async function send(ev) {
  ev.preventDefault();
  const input = $("input");
  const text = input.value;
  if (!text.trim() || !state.current) return;
  if (!state.es) openStream(true); // the tab in use streams, taking a slot if it must
  const { rid, wid } = state.current;
  const status = $("composer-status");
  const mine = ++state.sends;
  status.textContent = "sending…";
  try {
    const body = JSON.stringify({ text, busy_policy: "REJECT", request_id: requestId() });
    const res = await api(`/api/runtimes/${encodeURIComponent(rid)}/workers/${encodeURIComponent(wid)}/input`,
      { method: "POST", body });
    // sent: the draft is done — unless another was typed while this answer was on its way
    // (the run's events can arrive before it), which must not be wiped out
    if (input.value === text) input.value = "";
    if (mine === state.sends) status.textContent = "";
    setBadge(res.run);
  } catch (err) {
    // The draft stays in the box: the person can send it again when the worker is free.
    if (mine === state.sends) {
      status.textContent = err.reason === "WORKER_BUSY" ? "busy — the worker is still answering" : err.message;
    }
  }
}

async function cancelRun() {
  if (!state.run || !state.current) return;
  $("cancel").disabled = true;
  try {
    const res = await api(`/api/runtimes/${encodeURIComponent(state.current.rid)}/runs/` +
      `${encodeURIComponent(state.run.run_id)}/cancel`, { method: "POST", body: "{}" });
    setBadge(res.run);
  } catch (err) {
    $("composer-status").textContent = err.message;
  }
}

async function createWorker(ev) {
  ev.preventDefault();
  $("create-error").textContent = "";
  const body = { ...pickedProfile($("create-profile")), display_name: $("create-name").value };
  if ($("create-runtime").value) body.runtime_id = $("create-runtime").value;
  try {
    const res = await api("/api/workers", { method: "POST", body: JSON.stringify(body) });
    $("create-name").value = "";
    await refresh();
    location.hash = `#/w/${encodeURIComponent(res.runtime_id)}/${encodeURIComponent(res.worker.worker_id)}`;
  } catch (err) {
    $("create-error").textContent = err.message;
  }
}

// The worker a link names ([rid, wid]), or null: no link, or one whose parts are not valid
// percent-encoding (a link cut off when pasted), where decodeURIComponent throws.
function linked() {
  const m = location.hash.match(/^#\/w\/([^/]+)\/([^/]+)$/);
  if (!m) return null;
  try {
    return [decodeURIComponent(m[1]), decodeURIComponent(m[2])];
  } catch (err) {
    return null;
  }
}

function route() {
  const link = linked();
  if (link) attach(...link);
}

// --- login ----------------------------------------------------------------------------------

function showLogin() {
  $("login").hidden = false;
  $("app").hidden = true;
  $("logout").hidden = true;
}

// Ends the session on the server (a copy of the cookie stops working too), stops the stream and
// forgets what the page showed: the next person at this browser sees only the login form.
async function logout() {
  try {
    await api("/api/logout", { method: "POST" });
  } catch (err) {
    // a session that had already ended: the login form is the right place anyway
  }
  closeStream();
  state.current = null;
  state.workers = [];
  state.workersTotal = 0;
  state.runtimes = [];
  state.lastSeq = 0;
  $("worker-list").replaceChildren();
  $("worker-list-more").hidden = true;
  $("transcript").replaceChildren();
  $("event-log").replaceChildren();
  $("health").replaceChildren();
  $("console").hidden = true;
  history.replaceState(null, "", location.pathname);
  showLogin();
}

async function login(ev) {
  ev.preventDefault();
  try {
    await api("/api/login", { method: "POST", body: JSON.stringify({ token: $("login-token").value }) });
    $("login-token").value = "";
    start();
  } catch (err) {
    $("login-error").textContent = err.message;
  }
}

async function start() {
  const s = await api("/api/session");
  if (s.auth_required && !s.authenticated) return showLogin();
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = !s.auth_required; // an open console has no session to end
  await refresh();
  if (!linked() && state.workers.length) {
    const w = state.workers[0];
    location.hash = `#/w/${encodeURIComponent(w.runtime_id)}/${encodeURIComponent(w.worker.worker_id)}`;
  } else {
    route();
  }
}

// A hidden tab gives its connection back (browsers allow ~6 per origin over HTTP/1.1) and
// resumes from its last seq when shown again.
document.addEventListener("visibilitychange", () => {
  if (document.hidden) closeStream();
  else if (state.current && !state.es && state.lastSeq) openStream(true);
});
window.addEventListener("focus", () => {
  if (state.current && !state.es && state.lastSeq && !document.hidden) openStream(true);
});
// A paused tab takes a slot as soon as one is free.
setInterval(() => {
  if (state.current && !state.es && state.lastSeq && !document.hidden) openStream(false);
}, 3000);
window.addEventListener("hashchange", route);
$("composer").addEventListener("submit", send);
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) send(e);
});
$("cancel").addEventListener("click", cancelRun);
$("create-form").addEventListener("submit", createWorker);
$("create-runtime").addEventListener("change", renderProfiles);
$("login-form").addEventListener("submit", login);
$("logout").addEventListener("click", logout);
setInterval(() => { if (!document.hidden) refresh(); }, 5000);
start();
