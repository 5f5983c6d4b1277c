// Ghost Engine console: submit a scene, watch the job, draw the result. No framework, no build.
//
// Every value that comes from a job (prompt, style, error, names in the scene) goes into the
// page as text: textContent and SVG text nodes, never innerHTML. The page's
// Content-Security-Policy (webconsole.py) forbids inline script and other origins as well.
//
// Watching a job: GET /status/{id}/events (Server-Sent Events) while no API token is set;
// EventSource cannot send an Authorization header, so with a token (or when the stream is not
// offered) it long-polls GET /status/{id}?wait=&since=, and falls back to plain polling when
// the API does not know ?wait either.

const TOKEN_KEY = "ghost-engine.apiToken";
const JOB_ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ROUTE_RE = /^#\/jobs\/([0-9a-f-]{36})$/;
const SEED_RE = /^-?\d+$/;
const SEED_MIN = -(2n ** 63n);
const SEED_MAX = 2n ** 63n - 1n;
const PROMPT_MAX = 1000;
const STYLE_MAX = 64;
const ACTIVE = new Set(["queued", "running"]);
const STATE_TEXT = { queued: "◷ queued", running: "▶ running", done: "✓ done", failed: "✕ failed", canceled: "⊘ canceled" };
const LONG_POLL_SECONDS = 25;
const POLL_MS = 1000;
const SVG_NS = "http://www.w3.org/2000/svg";
const UNIT = 24; // SVG pixels per scene grid unit
const COLOR_RE = /^#[0-9a-fA-F]{6}$/;
const FALLBACK_PALETTE = ["#1c1a2b", "#3b3657", "#9d8cff", "#f4f1ff"];
const BACKDROP = "#0b0a12";

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// -- the API ---------------------------------------------------------------------------------

// Seeds are 64-bit integers, beyond what a JS number holds exactly: keep their digits as text
// (JSON.parse's source text where the browser offers it).
function parseJson(text) {
  return JSON.parse(text, (key, value, context) => {
    if (key === "seed" && typeof value === "number") {
      return context && typeof context.source === "string" ? context.source : String(value);
    }
    return value;
  });
}

let tokenRequest = null;

function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// Ask for the API token once (concurrent callers share the dialog); resolves when one is set.
function askToken(message) {
  if (tokenRequest === null) {
    tokenRequest = new Promise((resolve, reject) => {
      const dialog = $("token-dialog");
      const error = $("token-error");
      error.hidden = !message;
      error.textContent = message || "";
      $("token-input").value = "";
      const done = (ok) => {
        dialog.removeEventListener("close", onClose);
        $("token-form").removeEventListener("submit", onSubmit);
        tokenRequest = null;
        if (ok) resolve();
        else reject(new ApiError(401, "unauthorized", "this orchestrator needs an API token: use the API token button"));
      };
      const onSubmit = (event) => {
        event.preventDefault();
        const token = $("token-input").value.trim();
        if (!token) return;
        sessionStorage.setItem(TOKEN_KEY, token);
        done(true);
        dialog.close();
      };
      const onClose = () => done(false);
      $("token-form").addEventListener("submit", onSubmit);
      dialog.addEventListener("close", onClose);
      if (!dialog.open) dialog.showModal();
      $("token-input").focus();
    });
  }
  return tokenRequest;
}

async function api(method, path, body, extraHeaders = {}) {
  for (;;) {
    const token = storedToken();
    const headers = { Accept: "application/json", ...extraHeaders };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, { method, headers, body, cache: "no-store" });
    const text = await response.text();
    let data = null;
    try {
      data = text ? parseJson(text) : null;
    } catch {
      data = null;
    }
    if (response.status === 401) {
      await askToken(token ? "That token was refused; enter the orchestrator's API_TOKEN." : "");
      continue;
    }
    if (!response.ok) {
      const error = data && data.error ? data.error : {};
      throw new ApiError(response.status, error.code || "error", error.message || `the API answered ${response.status}`);
    }
    return data;
  }
}

function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// -- the form --------------------------------------------------------------------------------

// The API's own rules (scene.parse_input), so most mistakes are caught before a request.
function readForm() {
  const prompt = $("prompt").value;
  const seed = $("seed").value.trim();
  const style = $("style").value;
  const problems = [];
  if (!prompt.trim()) problems.push(["prompt", "prompt is required and must be a non-empty string"]);
  else if ([...prompt].length > PROMPT_MAX) problems.push(["prompt", `prompt is ${[...prompt].length} characters; the limit is ${PROMPT_MAX}`]);
  if (seed && !SEED_RE.test(seed)) problems.push(["seed", `seed must be an integer, got ${JSON.stringify(seed)}`]);
  else if (seed && (BigInt(seed) < SEED_MIN || BigInt(seed) > SEED_MAX)) {
    problems.push(["seed", `seed must fit a signed 64-bit integer (${SEED_MIN}..${SEED_MAX}), got ${seed}`]);
  }
  if ([...style].length > STYLE_MAX) problems.push(["style", `style is ${[...style].length} characters; the limit is ${STYLE_MAX}`]);
  const exactSeed = seed && SEED_RE.test(seed) ? BigInt(seed).toString() : null;
  return { input: { prompt, seed: exactSeed, style: style || null }, problems };
}

// The body by hand, so a seed keeps every digit (JSON.stringify would go through a double).
function requestBody(input) {
  const fields = [`"prompt":${JSON.stringify(input.prompt)}`];
  if (input.seed !== null) fields.push(`"seed":${input.seed}`);
  if (input.style !== null) fields.push(`"style":${JSON.stringify(input.style)}`);
  return `{${fields.join(",")}}`;
}

function showFormError(message, field) {
  const box = $("form-error");
  box.hidden = !message;
  box.textContent = message || "";
  for (const name of ["prompt", "seed", "style"]) {
    $(name).setAttribute("aria-invalid", String(name === field));
  }
  if (field) $(field).focus();
}

async function submitJob(input, rerunOf = null) {
  const button = $("submit-button");
  button.disabled = true;
  $("rerun-button").disabled = true;
  try {
    const accepted = await api("POST", "/generate-scene", requestBody(input), { "Idempotency-Key": idempotencyKey() });
    showFormError("");
    pendingRerun = rerunOf ? { ...rerunOf, jobId: accepted.jobId } : null;
    location.hash = `#/jobs/${accepted.jobId}`;
    loadRecent();
  } catch (error) {
    showFormError(error.message);
  } finally {
    button.disabled = false;
    $("rerun-button").disabled = false;
  }
}

function onSubmit(event) {
  event.preventDefault();
  const { input, problems } = readForm();
  if (problems.length) {
    showFormError(problems.map((p) => p[1]).join("\n"), problems[0][0]);
    return;
  }
  submitJob(input);
}

// -- watching a job --------------------------------------------------------------------------

let current = null; // { id, job, source, elapsedTimer, drawnDigest }
let generation = 0;
let pendingRerun = null; // { jobId, ofJobId, svg }: the rerun whose drawing is compared

function stopWatching() {
  generation += 1;
  if (current && current.source) current.source.close();
  if (current && current.elapsedTimer) clearInterval(current.elapsedTimer);
  current = null;
}

async function openJob(id) {
  stopWatching();
  const mine = generation;
  current = { id, job: null, source: null, elapsedTimer: null, drawnDigest: null };
  resetJobView(id);
  markCurrentInList();
  let job;
  try {
    job = await api("GET", `/status/${id}`);
  } catch (error) {
    if (mine === generation) showJobError(error.status === 404 ? `no job with id ${id}` : error.message);
    return;
  }
  if (mine !== generation) return;
  render(job);
  if (ACTIVE.has(job.state)) {
    current.elapsedTimer = setInterval(() => current && current.job && showElapsed(current.job), 250);
    watch(id, mine);
  }
}

function watch(id, mine) {
  if (storedToken() || typeof EventSource === "undefined") {
    longPoll(id, mine);
    return;
  }
  $("job-updates").textContent = "live: events stream";
  const source = new EventSource(`/status/${id}/events`);
  current.source = source;
  let seen = 0;
  let ended = false;
  source.addEventListener("status", (event) => {
    if (mine !== generation) return;
    seen += 1;
    const job = parseJson(event.data);
    render(job);
    ended = !ACTIVE.has(job.state);
  });
  source.addEventListener("error", () => {
    // The server ends the stream after the final event; close before the browser reconnects.
    // A stream refused before any event (no such route, a token needed) falls back to polling.
    if (ended || seen === 0) source.close();
    if (!ended && seen === 0 && mine === generation) longPoll(id, mine);
  });
}

async function longPoll(id, mine) {
  let waitSupported = true;
  $("job-updates").textContent = "live: long polling";
  while (mine === generation && current && ACTIVE.has(current.job.state)) {
    const since = encodeURIComponent(current.job.updatedAt);
    const path = waitSupported ? `/status/${id}?wait=${LONG_POLL_SECONDS}&since=${since}` : `/status/${id}`;
    try {
      const job = await api("GET", path);
      if (mine === generation) render(job);
    } catch (error) {
      if (mine !== generation) return;
      if (error.status === 400 && waitSupported) {
        waitSupported = false; // an API without ?wait: poll every second instead
        $("job-updates").textContent = "live: polling";
        continue;
      }
      showJobError(error.message);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
    if (!waitSupported) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

async function cancelJob() {
  if (!current) return;
  const mine = generation;
  $("cancel-button").disabled = true;
  try {
    const job = await api("POST", `/jobs/${current.id}/cancel`);
    if (mine === generation) render(job); // the list is refreshed as the job ends
  } catch (error) {
    if (mine === generation) showJobError(error.message);
  }
}

function rerunJob() {
  if (!current || !current.job) return;
  const { prompt, seed, style } = current.job.input;
  const svg = $("scene").querySelector("svg");
  const rerunOf = svg && current.job.result  // a drawing to compare the new one with
    ? { ofJobId: current.id, digest: current.job.result.digest, svg: new XMLSerializer().serializeToString(svg) }
    : null;
  submitJob({ prompt, seed: seed === null ? null : String(seed), style }, rerunOf);
}

// -- the job view ----------------------------------------------------------------------------

function resetJobView(id) {
  $("job").hidden = false;
  $("job-id").textContent = id;
  $("job-link").href = `#/jobs/${id}`;
  $("job-state").textContent = "loading…";
  $("job-state").removeAttribute("data-state");
  $("job-elapsed").textContent = "";
  $("job-updates").textContent = "";
  for (const field of ["job-prompt", "job-style", "job-seed", "job-digest", "job-note", "scene-caption"]) $(field).textContent = "";
  $("job-progress").value = 0;
  $("job-progress-text").textContent = "0 %";
  $("job-error").hidden = true;
  $("scene-figure").hidden = true;
  $("scene").replaceChildren();
  $("cancel-button").disabled = true;
  $("rerun-button").disabled = true;
}

function render(job) {
  if (!current || job.jobId !== current.id) return;
  const previous = current.job;
  if (previous && previous.updatedAt > job.updatedAt) return; // an older answer arriving late
  current.job = job;
  const state = $("job-state");
  state.textContent = STATE_TEXT[job.state] || job.state;
  state.dataset.state = job.state;
  $("job-progress").value = job.progress;
  $("job-progress-text").textContent = `${Math.round(job.progress * 100)} %`;
  $("job-prompt").textContent = job.input.prompt;
  $("job-style").textContent = job.input.style === null ? "(none)" : job.input.style;
  $("job-seed").textContent = String(job.input.seed);
  $("job-digest").textContent = job.result ? job.result.digest : "—";
  showElapsed(job);
  if (job.error) showJobError(job.error);
  else $("job-error").hidden = true;
  $("cancel-button").disabled = !ACTIVE.has(job.state);
  $("rerun-button").disabled = false;
  if (!ACTIVE.has(job.state)) {
    if (current.elapsedTimer) clearInterval(current.elapsedTimer);
    current.elapsedTimer = null;
    $("job-updates").textContent = "";
    if (previous && ACTIVE.has(previous.state)) loadRecent(); // it just ended: the list shows it
  }
  if (job.state === "done" && job.result && current.drawnDigest !== job.result.digest) {
    current.drawnDigest = job.result.digest;
    drawResult(job);
  }
}

function showElapsed(job) {
  const started = Date.parse(job.createdAt);
  const until = ACTIVE.has(job.state) ? Date.now() : Date.parse(job.updatedAt);
  $("job-elapsed").textContent = `${(Math.max(0, until - started) / 1000).toFixed(1)} s`;
}

function showJobError(message) {
  const box = $("job-error");
  box.textContent = message;
  box.hidden = false;
}

function drawResult(job) {
  const svg = drawScene(job.result);
  $("scene").replaceChildren(svg);
  const { stats, title } = job.result.scene;
  $("scene-caption").textContent = `${title}: ${stats.rooms} rooms, ${stats.doors} doors, ${stats.entities} entities, ` +
    `${stats.lights} lights; seed ${job.result.seed}`;
  $("scene-figure").hidden = false;
  if (pendingRerun && pendingRerun.jobId === job.jobId) {
    const drawing = new XMLSerializer().serializeToString(svg);
    const same = drawing === pendingRerun.svg && job.result.digest === pendingRerun.digest;
    $("job-note").textContent = same
      ? `Same seed as job ${pendingRerun.ofJobId}: identical digest and identical drawing.`
      : `Same seed as job ${pendingRerun.ofJobId}, but the result differs.`;
    pendingRerun = null;
  }
}

// -- the scene as SVG ------------------------------------------------------------------------

function svgElement(name, attributes = {}, text = null) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== null) element.textContent = text;
  return element;
}

// A pure function of the result: the same result gives the same markup, byte for byte.
function drawScene(result) {
  const scene = result.scene;
  const palette = scene.palette.map((c, i) => (COLOR_RE.test(c) ? c : FALLBACK_PALETTE[i % 4]));
  while (palette.length < 4) palette.push(FALLBACK_PALETTE[palette.length]);
  const rooms = new Map(scene.rooms.map((room) => [room.id, room]));
  const xs = scene.rooms.flatMap((r) => [r.x, r.x + r.w]);
  const ys = scene.rooms.flatMap((r) => [r.y, r.y + r.h]);
  const minX = Math.min(...xs) - 1;
  const minY = Math.min(...ys) - 1;
  const width = Math.max(...xs) + 1 - minX;
  const height = Math.max(...ys) + 1 - minY;
  const u = (n) => n * UNIT;
  const svg = svgElement("svg", { viewBox: `${u(minX)} ${u(minY)} ${u(width)} ${u(height)}`, role: "img",
                                  "aria-labelledby": "scene-title" });
  svg.append(svgElement("title", { id: "scene-title" },
    `${scene.title}: ${scene.rooms.length} rooms, ${scene.doors.length} doors, ${scene.entities.length} entities`));
  svg.append(svgElement("rect", { x: u(minX), y: u(minY), width: u(width), height: u(height), fill: BACKDROP }));

  const lights = svgElement("g", { class: "lights" });
  for (const light of scene.lights) {
    const room = rooms.get(light.room);
    if (!room) continue;
    const color = COLOR_RE.test(light.color) ? light.color : palette[2];
    lights.append(svgElement("circle", {
      class: light.flicker ? "light flicker" : "light", cx: u(room.x + room.w / 2), cy: u(room.y + room.h / 2),
      r: u(Math.max(room.w, room.h) * 0.6), fill: color, "fill-opacity": (0.15 + 0.45 * light.intensity).toFixed(3),
    }));
  }

  const roomLayer = svgElement("g", { class: "rooms" });
  for (const room of scene.rooms) {
    roomLayer.append(svgElement("rect", { class: "room", "data-room": room.id, x: u(room.x), y: u(room.y), width: u(room.w),
                                         height: u(room.h), fill: palette[0], "fill-opacity": "0.6", stroke: palette[2] }));
  }
  const labelLayer = svgElement("g", { class: "room-labels" }); // drawn last: never under a marker
  for (const room of scene.rooms) {
    labelLayer.append(svgElement("text", { class: "room-label", x: u(room.x) + 6, y: u(room.y) + 18 }, `${room.kind} ${room.id}`));
  }

  const doorLayer = svgElement("g", { class: "doors" });
  for (const door of scene.doors) {
    const a = rooms.get(door.from);
    const b = rooms.get(door.to);
    if (!a || !b) continue;
    const top = Math.max(a.y, b.y);
    const bottom = Math.min(a.y + a.h, b.y + b.h);
    // Through the shared wall span when the rooms overlap vertically, else edge centre to edge centre.
    const y1 = top < bottom ? (top + bottom) / 2 : a.y + a.h / 2;
    const y2 = top < bottom ? y1 : b.y + b.h / 2;
    doorLayer.append(svgElement("line", { class: "door", x1: u(a.x + a.w), y1: u(y1), x2: u(b.x), y2: u(y2) }));
  }

  const entityLayer = svgElement("g", { class: "entities" });
  for (const entity of scene.entities) {
    const group = svgElement("g", { class: "entity-group" });
    const cx = u(entity.x + 0.5);
    const cy = u(entity.y + 0.5);
    group.append(svgElement("circle", { class: "entity", cx, cy, r: UNIT * 0.3, fill: palette[3] }));
    group.append(svgElement("text", { class: "entity-label", x: cx + 9, y: cy + 4 }, String(entity.type)));
    entityLayer.append(group);
  }
  svg.append(lights, roomLayer, doorLayer, entityLayer, labelLayer);
  return svg;
}

// -- recent jobs -----------------------------------------------------------------------------

let recentCursor = null;

async function loadRecent(more = false) {
  const status = $("recent-status");
  try {
    const page = await api("GET", more && recentCursor ? `/jobs?limit=10&cursor=${encodeURIComponent(recentCursor)}` : "/jobs?limit=10");
    recentCursor = page.nextCursor;
    const items = page.jobs.map(recentItem);
    if (more) $("recent").append(...items);
    else $("recent").replaceChildren(...items);
    status.textContent = $("recent").children.length ? "" : "No jobs yet.";
    $("more-button").hidden = recentCursor === null;
    markCurrentInList();
  } catch (error) {
    status.textContent = error.status === 404 ? "This API does not list jobs." : `Could not list jobs: ${error.message}`;
  }
}

function recentItem(job) {
  const link = document.createElement("a");
  link.href = `#/jobs/${job.jobId}`;
  link.dataset.jobId = job.jobId;
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.dataset.state = job.state;
  badge.textContent = STATE_TEXT[job.state] || job.state;
  const prompt = document.createElement("span");
  prompt.className = "prompt";
  prompt.textContent = job.input.prompt;
  const when = document.createElement("span");
  when.className = "when";
  when.textContent = `${new Date(job.createdAt).toLocaleString()} · seed ${job.input.seed}`;
  link.append(badge, prompt, when);
  const item = document.createElement("li");
  item.append(link);
  return item;
}

function markCurrentInList() {
  for (const link of $("recent").querySelectorAll("a")) {
    if (current && link.dataset.jobId === current.id) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

// -- routing and start -----------------------------------------------------------------------

function route() {
  const match = ROUTE_RE.exec(location.hash);
  if (match && JOB_ID_RE.test(match[1])) {
    if (!current || current.id !== match[1]) openJob(match[1]);
  } else if (location.hash.startsWith("#/jobs/")) {
    stopWatching();
    resetJobView("");
    showJobError("that link does not name a job id");
  }
}

function start() {
  $("submit-form").addEventListener("submit", onSubmit);
  $("cancel-button").addEventListener("click", cancelJob);
  $("rerun-button").addEventListener("click", rerunJob);
  $("refresh-button").addEventListener("click", () => loadRecent());
  $("more-button").addEventListener("click", () => loadRecent(true));
  $("token-button").addEventListener("click", () => askToken("").then(() => loadRecent(), () => {}));
  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("token-dialog").close();
  });
  window.addEventListener("hashchange", route);
  route();
  loadRecent();
}

start();
