// What every page shares: the token, calls to the REST API, the event stream reader, the
// header with the emergency stop, and small formatting helpers.
//
// The pages hold no data: everything comes from the API a script would call, with the token
// the user entered once (session storage: it ends with the tab). A server without tokens
// (loopback) never asks for one: the sign-in dialog opens only when the API answers 401.

const TOKEN_KEY = "hil.token";
const BENCHES_KEY = "hil.benches";

export class ApiError extends Error {
  constructor(status, body) {
    super(describeError(status, body));
    this.status = status;
    this.body = body;
    this.field = body && typeof body === "object" ? body.field || null : null;
  }
}

// The API's message: `detail` (a string, or FastAPI's list of {loc, msg}), with the field.
export function describeError(status, body) {
  if (!body || typeof body !== "object") return `HTTP ${status}`;
  const { detail } = body;
  if (Array.isArray(detail)) {
    return detail
      .map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`)
      .join("; ");
  }
  return typeof detail === "string" ? detail : `HTTP ${status}`;
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

let asking = null;

// Opens the sign-in dialog (once for every call waiting on it); resolves with the new token.
export function askForToken(message = "") {
  if (asking) return asking;
  const dialog = document.getElementById("login");
  const form = dialog.querySelector("form");
  const input = dialog.querySelector("input[name=token]");
  const note = dialog.querySelector(".login-note");
  note.textContent = message || "The server asks for a token (HIL_API_TOKEN or one of --tokens).";
  input.value = "";
  asking = new Promise((resolve) => {
    form.addEventListener(
      "submit",
      (ev) => {
        ev.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        dialog.close();
        asking = null;
        resolve(token());
      },
      { once: true },
    );
  });
  dialog.showModal();
  input.focus();
  return asking;
}

export function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  if (token()) h.Authorization = `Bearer ${token()}`;
  return h;
}

// One call of the API: resolves with the decoded JSON, throws ApiError for any other answer
// than 2xx; a 401 opens the sign-in dialog and repeats the call with the token entered.
export async function api(path, { method = "GET", body, lease } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const extra = {};
    if (body !== undefined) extra["Content-Type"] = "application/json";
    if (lease) extra["X-Lease-Token"] = lease;
    const response = await fetch(path, {
      method,
      headers: headers(extra),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    let data = null;
    const text = await response.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = { detail: text };
      }
    }
    if (response.status === 401) {
      await askForToken(attempt ? "That token was refused; try again." : "");
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }
}

// Server-sent events over fetch (EventSource cannot send the Authorization header):
// reconnects after a dropped connection with Last-Event-ID, so no event is lost or repeated.
export class EventStream {
  constructor(path, { onEvent, onState, doneOn = [], keepGoing = async () => true }) {
    this.path = path;
    this.keepGoing = keepGoing;
    this.onEvent = onEvent;
    this.onState = onState || (() => {});
    this.doneOn = new Set(doneOn);
    this.lastId = 0;
    this.retryMs = 2000;
    this.closed = false;
    this.reconnects = 0;
    this.controller = null;
  }

  start() {
    this.loop();
    return this;
  }

  close() {
    this.closed = true;
    if (this.controller) this.controller.abort();
  }

  // Drop the connection (as a network failure would); the stream reconnects by itself.
  drop() {
    if (this.controller) this.controller.abort();
  }

  async loop() {
    while (!this.closed) {
      this.controller = new AbortController();
      let done = false;
      try {
        const extra = { Accept: "text/event-stream" };
        if (this.lastId) extra["Last-Event-ID"] = String(this.lastId);
        this.onState(this.reconnects ? "reconnecting" : "connecting");
        const response = await fetch(this.path, {
          headers: headers(extra),
          signal: this.controller.signal,
          cache: "no-store",
        });
        if (response.status === 401) {
          await askForToken();
          continue;
        }
        if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
        this.onState("open");
        done = await this.read(response.body.getReader());
      } catch (err) {
        if (err instanceof ApiError && err.status === 404) {
          this.onState("closed", err.message);
          return;
        }
      }
      if (done || this.closed) break;
      // the server ended the stream without the last event: reconnect only if it may go on
      if (!(await this.keepGoing().catch(() => true))) break;
      this.reconnects += 1;
      this.onState("reconnecting");
      await new Promise((r) => setTimeout(r, this.retryMs));
    }
    this.closed = true;
    this.onState("closed");
  }

  // Parses the stream; true once an event of `doneOn` came and the stream ended.
  async read(reader) {
    const decoder = new TextDecoder();
    let buffer = "";
    let event = { id: null, kind: "message", data: [] };
    let finished = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return finished;
      buffer += decoder.decode(value, { stream: true });
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (event.data.length) {
            const id = event.id === null ? null : Number(event.id);
            if (id === null || id > this.lastId) {
              if (id !== null) this.lastId = id;
              let data = null;
              try {
                data = JSON.parse(event.data.join("\n"));
              } catch {
                data = event.data.join("\n");
              }
              this.onEvent(event.kind, data, id);
              if (this.doneOn.has(event.kind)) finished = true;
            }
          }
          event = { id: null, kind: "message", data: [] };
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "id") event.id = val;
        else if (field === "event") event.kind = val;
        else if (field === "data") event.data.push(val);
        else if (field === "retry" && /^\d+$/.test(val)) this.retryMs = Number(val);
      }
    }
  }
}

// --- formatting -----------------------------------------------------------------------------
export function when(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const d = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function percent(x) {
  return Number.isFinite(x) ? `${(100 * x).toFixed(1)} %` : "–";
}

// A status as a badge: a symbol and the word, never colour alone.
const SYMBOLS = {
  queued: "◷", running: "▶", finished: "✓", stopped: "■", failed: "✗", interrupted: "⚠",
  armed: "⚡", safe: "○", unconfirmed: "⚠", estop: "■",
};

export function badge(status) {
  const span = document.createElement("span");
  span.className = `badge badge-${status}`;
  span.dataset.status = status;
  span.textContent = `${SYMBOLS[status] || ""} ${status}`.trim();
  return span;
}

export function text(node, value) {
  node.textContent = value;
  return node;
}

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

export function param(name) {
  return new URLSearchParams(location.search).get(name);
}

export function showError(node, err) {
  node.hidden = false;
  node.textContent = err instanceof Error ? err.message : String(err);
}

// --- benches and the emergency stop --------------------------------------------------------
let pageBenches = [];

export function rememberBenches(ids) {
  const known = new Set([...knownBenches(), ...ids]);
  sessionStorage.setItem(BENCHES_KEY, JSON.stringify([...known]));
}

export function knownBenches() {
  try {
    return JSON.parse(sessionStorage.getItem(BENCHES_KEY) || "[]");
  } catch {
    return [];
  }
}

// The bench(es) this page is about: the emergency stop covers them even for a token that
// cannot list the benches (an e-stop-only token).
export function setPageBenches(ids) {
  pageBenches = ids.filter(Boolean);
  rememberBenches(pageBenches);
}

// Every bench the stop should reach: those listed by the API, else those this tab has seen.
async function estopTargets() {
  try {
    const benches = await api("/benches");
    const ids = benches.map((b) => b.id);
    rememberBenches(ids);
    return ids;
  } catch {
    return [...new Set([...pageBenches, ...knownBenches()])];
  }
}

async function emergencyStop(button, out) {
  button.disabled = true;
  out.hidden = false;
  out.className = "estop-result pending";
  out.textContent = "Emergency stop: putting the benches in their safe state…";
  const lines = [];
  let failed = false;
  try {
    const ids = await estopTargets();
    if (!ids.length) throw new Error("no bench known to this page: open the runs page first");
    const outcomes = await Promise.allSettled(
      ids.map((id) => api(`/benches/${encodeURIComponent(id)}/safe-state`, { method: "POST" })),
    );
    outcomes.forEach((o, k) => {
      if (o.status === "fulfilled") {
        const v = o.value;
        const parts = [`${v.bench}: ${v.message}`];
        if (v.run_stopped) parts.push(`run ${v.run_stopped} told to stop`);
        if (v.lease_revoked) parts.push(`lease of ${v.lease_revoked} ended`);
        if (!v.confirmed) {
          failed = true;
          parts.push(`NOT CONFIRMED: switch off by hand: ${v.unconfirmed.join(", ")}`);
        }
        lines.push(parts.join(" · "));
      } else {
        failed = true;
        lines.push(`${ids[k]}: the stop failed: ${o.reason.message}`);
      }
    });
  } catch (err) {
    failed = true;
    lines.push(`Emergency stop failed: ${err.message}`);
  }
  out.className = `estop-result ${failed ? "failed" : "done"}`;
  out.replaceChildren(
    h("strong", {}, failed ? "⚠ Emergency stop: check the benches" : "✓ Emergency stop done"),
    ...lines.map((line) => h("div", { class: "estop-line" }, line)),
  );
  button.disabled = false;
  document.dispatchEvent(new CustomEvent("hil:estop"));
}

// The header of every page: navigation, the emergency stop, the sign-in dialog.
export function setUpPage(current) {
  const button = document.getElementById("estop");
  const out = document.getElementById("estop-result");
  button.addEventListener("click", () => emergencyStop(button, out));
  document.getElementById("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  const nav = document.getElementById("bench-links");
  api("/benches")
    .then((benches) => {
      rememberBenches(benches.map((b) => b.id));
      nav.replaceChildren(
        ...benches.map((b) =>
          h(
            "a",
            {
              href: `bench.html?id=${encodeURIComponent(b.id)}`,
              "aria-current": current === `bench:${b.id}` ? "page" : null,
            },
            `Bench ${b.id}`,
          ),
        ),
      );
    })
    .catch(() => {});
}
