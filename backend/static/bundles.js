// Config bundles in the console: the "Config bundles" panel (each bundle file, its digest and
// profiles, and per runtime whether it is present, being pushed, failed — with the runtime's
// reason as a tooltip — or missing) and the bundles' profiles in the create form's picker.
// Data: GET /api/bundles (the Backend re-reads its bundles directory on each call). Text only
// (textContent), like the rest of the page.

let bundles = []; // the last GET /api/bundles "bundles"
let enabled = false;
let loadedAt = -Infinity; // performance.now() of the last answer
// The page refreshes every 5 s in every tab, and over HTTP/1.1 the tabs share the ~2 connections
// the stream slots leave free: once every bundle is settled (present or failed everywhere) the
// bundles view is asked for at most every 30 s, and never again when the Backend has no bundles
// directory; while a push is under way it follows every refresh.
const BUNDLES_EVERY_MS = 30000;

function settled() {
  return bundles.every(
    (b) => b.error || b.runtimes.every((r) => r.state === "present" || r.state === "failed"),
  );
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

export async function loadBundles(api) {
  const now = performance.now();
  const due =
    loadedAt === -Infinity || (enabled && (!settled() || now - loadedAt >= BUNDLES_EVERY_MS));
  if (!due) return;
  try {
    const res = await api("/api/bundles");
    bundles = res.bundles;
    enabled = res.enabled;
    loadedAt = now;
  } catch (err) {
    if (err.status === 401) throw err;
    // the panel keeps what it showed: bundles are an extra, never a reason to fail the page
  }
  renderPanel();
}

function renderPanel() {
  const panel = document.getElementById("bundles");
  panel.hidden = !enabled;
  const list = document.getElementById("bundle-list");
  list.replaceChildren();
  for (const b of bundles) {
    const li = el("li", "bundle");
    li.dataset.bundleId = b.id;
    const head = el("div", "name", b.id);
    if (b.digest) head.append(el("span", "meta", ` ${b.digest.slice(7, 19)}`));
    li.append(head);
    if (b.error) { // pushed nowhere: no runtime chips
      li.append(el("div", "error", `${b.file}: ${b.error}`));
      list.append(li);
      continue;
    }
    li.append(el("div", "meta", b.profiles.length ? b.profiles.join(", ") : "no profiles"));
    const places = el("div", "places");
    for (const r of b.runtimes) {
      const chip = el("span", "chip", `${r.alias || r.runtime_id.slice(0, 8)}: ${r.state}`);
      chip.dataset.state = r.state;
      chip.dataset.runtimeId = r.runtime_id;
      if (r.reason) chip.title = r.reason;
      places.append(chip);
    }
    li.append(places);
    list.append(li);
  }
}

// Options for the profile picker: every profile of every bundle the Backend can push, except on
// a runtime where that bundle failed. value = "REF/PROFILE"; the create sends bundle + profile.
export function bundleOptions(runtimeId) {
  const out = [];
  for (const b of bundles) {
    if (!b.ref) continue;
    const here = b.runtimes.find((r) => r.runtime_id === runtimeId);
    if (runtimeId && here && here.state === "failed") continue;
    for (const p of b.profiles) {
      const o = el("option", "", `${p} (bundle ${b.id})`);
      o.value = `${b.ref}/${p}`;
      o.dataset.bundle = b.ref;
      o.dataset.profile = p;
      out.push(o);
    }
  }
  return out;
}

// The create request's profile fields for the picked option.
export function pickedProfile(select) {
  const o = select.selectedOptions[0];
  if (!o) return { profile: select.value };
  if (!o.dataset.bundle) return { profile: o.value };
  return { profile: o.dataset.profile, bundle: o.dataset.bundle };
}
