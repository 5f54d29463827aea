// The run page: live learning curves from the run's event stream (resumed with
// Last-Event-ID after a reconnect), progress with rate and time left, the crossbar view,
// the run's config, errors and notes; stop and resume.
import { LineChart, SERIES_COLOURS, maxOf } from "./charts.js";
import {
  ApiError,
  EventStream,
  api,
  badge,
  duration,
  h,
  param,
  percent,
  setPageBenches,
  setUpPage,
  showError,
  when,
} from "./common.js";
import { CrossbarView } from "./crossbar.js";

const runId = param("id") || "";
const path = `/runs/${encodeURIComponent(runId)}`;
const LIVE = new Set(["queued", "running"]);

const state = {
  record: null,
  config: null,
  started: null,
  step: null,
  trainSteps: [], // [x, loss, accuracy]: running means over the epoch, x in epochs
  epochs: new Map(), // epoch -> its metrics
  notes: [],
  ended: null,
  arrivals: [], // [time (ms), global step] of live step events, for the rate
  stream: null,
};

const charts = document.getElementById("charts");
const series = [
  { key: "train", label: "train (running mean over the epoch)", colour: SERIES_COLOURS.train },
  { key: "trainEpoch", label: "train (after each epoch)", colour: SERIES_COLOURS.extra,
    dash: "2 3", marker: "circle" },
  { key: "test", label: "test (after each epoch)", colour: SERIES_COLOURS.test, dash: "7 4",
    marker: "square" },
];
const lossChart = new LineChart(charts, { title: "Loss", xLabel: "epoch", yLabel: "loss (V²)", series });
const accChart = new LineChart(charts, { title: "Accuracy", xLabel: "epoch", yLabel: "accuracy",
  yRange: [0, 1], series });
lossChart.svg.id = "loss-chart";
accChart.svg.id = "accuracy-chart";

const crossbar = new CrossbarView(document.getElementById("crossbar"), { label: "the run's crossbar" });

function drawCurves() {
  const epochs = [...state.epochs.values()].sort((a, b) => a.epoch - b.epoch);
  lossChart.set("train", state.trainSteps.map(([x, loss]) => [x, loss]));
  accChart.set("train", state.trainSteps.map(([x, , acc]) => [x, acc]));
  lossChart.set("trainEpoch", epochs.map((m) => [m.epoch, m.train_loss]));
  accChart.set("trainEpoch", epochs.map((m) => [m.epoch, m.train_accuracy]));
  lossChart.set("test", epochs.map((m) => [m.epoch, m.test_loss]));
  accChart.set("test", epochs.map((m) => [m.epoch, m.test_accuracy]));
  // the axis grows with the run, a whole epoch at a time (the progress bar shows the rest)
  const reached = maxOf([...state.trainSteps.map(([x]) => x), ...epochs.map((m) => m.epoch)], 1);
  lossChart.setXMax(Math.ceil(reached - 1e-9));
  accChart.setXMax(Math.ceil(reached - 1e-9));
}

function totalEpochs() {
  return state.started?.epochs ?? state.record?.epochs ?? null;
}

// Steps per second: from the step events as they arrived (when they came one by one), else
// from the epochs' recorded durations.
function rate() {
  const a = state.arrivals;
  if (a.length >= 3) {
    const [t0, g0] = a[0];
    const [t1, g1] = a.at(-1);
    if (t1 - t0 >= 2000 && g1 > g0) return ((g1 - g0) * 1000) / (t1 - t0);
  }
  const done = [...state.epochs.values()].filter((m) => Number.isFinite(m.seconds) && m.seconds > 0);
  const steps = state.step?.steps;
  if (done.length && steps) {
    const recent = done.slice(-3);
    return steps / (recent.reduce((s, m) => s + m.seconds, 0) / recent.length);
  }
  return NaN;
}

function drawProgress() {
  const bar = document.getElementById("progress");
  const out = document.getElementById("progress-text");
  const epochs = totalEpochs();
  const s = state.step;
  const status = currentStatus();
  if (!s || !epochs) {
    out.textContent = LIVE.has(status) ? "Waiting for the first step…" : "No steps recorded.";
    return;
  }
  const done = (s.epoch - 1) * s.steps + s.step;
  const total = epochs * s.steps;
  const fraction = Math.min(1, done / total);
  bar.value = fraction;
  const parts = [`epoch ${s.epoch} of ${epochs}`, `step ${s.step} of ${s.steps}`,
    `${(100 * fraction).toFixed(0)} %`];
  if (LIVE.has(status)) {
    const r = rate();
    if (Number.isFinite(r)) {
      parts.push(`${r.toPrecision(3)} steps/s`, `about ${duration((total - done) / r)} left`);
    }
  }
  out.textContent = parts.join(" · ");
}

function currentStatus() {
  return state.ended?.status ?? state.record?.status ?? "queued";
}

function drawRecord() {
  const r = state.record;
  if (!r) return;
  const status = currentStatus();
  const holder = document.getElementById("run-status");
  if (holder.dataset.status !== status) {
    holder.dataset.status = status;
    holder.replaceChildren(badge(status));
  }
  document.title = `Run ${r.id} (${status}) · hil-eqprop`;
  const facts = [
    ["name", r.name],
    ["bench", r.bench ? h("a", { href: `bench.html?id=${encodeURIComponent(r.bench)}` }, r.bench)
      : `– (${r.bench_kind})`],
    ["epochs", `${r.epochs_done} / ${r.epochs ?? "?"}`],
    ["best test accuracy", percent(maxOf([...state.epochs.values()].map((m) => m.test_accuracy)))],
    ["seed", r.seed],
    ["created", when(r.created_at)],
    ["started", when(r.started_at)],
    ["ended", when(r.ended_at)],
    ["git revision", r.git_revision || "–"],
  ];
  document.getElementById("run-facts").replaceChildren(
    ...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
  );
  const live = r.active || LIVE.has(status);
  document.getElementById("stop").disabled = !live;
  document.getElementById("resume").disabled = live || !["stopped", "interrupted"].includes(status);
  drawErrors();
}

function drawErrors() {
  const box = document.getElementById("errors");
  const items = [];
  const error = state.ended?.error ?? state.record?.error;
  if (error) items.push(h("div", { class: "error", role: "alert" }, h("strong", {}, "Error: "), error));
  if (state.ended?.emergency_stop_by) {
    items.push(h("p", {}, `Stopped by the emergency stop (${state.ended.emergency_stop_by}).`));
  }
  if (state.notes.length) {
    const list = h("ul", { class: "notes" });
    for (const n of state.notes.slice(-100).reverse()) {
      for (const note of n.notes) list.append(h("li", {}, `epoch ${n.epoch}, step ${n.step}: ${note}`));
    }
    items.push(h("p", {}, `Pulse notes (${state.notes.length} steps, newest first):`), list);
  }
  box.replaceChildren(...(items.length ? items : [h("p", { class: "sub" }, "None.")]));
}

async function loadRecord() {
  state.record = await api(path);
  setPageBenches(state.record.bench ? [state.record.bench] : []);
  drawRecord();
  drawProgress();
  return state.record;
}

let crossbarBusy = null;
let crossbarAgain = false;

// The conductances and pulse counts of the run's last checkpoint (or of its idle bench).
async function refreshCrossbar() {
  if (crossbarBusy) {
    crossbarAgain = true;
    return;
  }
  const note = document.getElementById("crossbar-source");
  crossbarBusy = (async () => {
    try {
      const [g, counts] = await Promise.all([api(`${path}/conductances`), api(`${path}/pulse-counts`)]);
      const net = state.config?.network;
      const bounds = net && net.g_min > 0 && net.g_max > net.g_min ? [net.g_min, net.g_max] : null;
      crossbar.update({
        tiles: g.tiles,
        counts: counts.counts.length ? counts.counts : null,
        endurance: counts.endurance,
        gBounds: bounds,
      });
      note.textContent = g.source === "checkpoint"
        ? `From the checkpoint after epoch ${g.epoch}${g.step ? `, step ${g.step}` : ""}.`
        : `Read from bench ${g.bench} (the run has no checkpoint with conductances).`;
    } catch (err) {
      note.textContent = err instanceof ApiError && err.status === 409
        ? "The conductances appear after the first epoch (its checkpoint holds them)."
        : `No conductances: ${err.message}`;
    }
  })();
  await crossbarBusy;
  crossbarBusy = null;
  if (crossbarAgain) {
    crossbarAgain = false;
    refreshCrossbar();
  }
}

function onEvent(kind, data) {
  if (kind === "started") {
    state.started = data;
    state.ended = null;
    const from = data.first_epoch - 1; // a resumed run trains its unfinished epoch again
    state.trainSteps = state.trainSteps.filter(([x]) => x <= from);
    for (const e of [...state.epochs.keys()]) if (e > from) state.epochs.delete(e);
    state.arrivals = [];
    if (state.record) state.record.status = "running";
    document.getElementById("run-desc").textContent = data.description || "";
  } else if (kind === "queued" || kind === "resumed") {
    state.ended = null;
    if (state.record) state.record.status = data.status;
  } else if (kind === "step") {
    state.step = data;
    state.trainSteps.push([data.epoch - 1 + data.step / data.steps, data.loss, data.accuracy]);
    const now = performance.now();
    const global = (data.epoch - 1) * data.steps + data.step;
    const last = state.arrivals.at(-1);
    // events that arrive together were waiting (a replay, a slow poll): not a rate
    if (last && now - last[0] < 5) state.arrivals = [];
    state.arrivals.push([now, global]);
    if (state.arrivals.length > 30) state.arrivals.shift();
  } else if (kind === "epoch") {
    state.epochs.set(data.epoch, data);
    if (state.record) state.record.epochs_done = Math.max(state.record.epochs_done, data.epoch);
    refreshCrossbar();
  } else if (kind === "pulse_notes") {
    state.notes.push(data);
  } else if (kind === "ended") {
    state.ended = data;
    loadRecord().catch(() => {});
    refreshCrossbar();
  }
  scheduleDraw();
}

let drawing = false;

function scheduleDraw() {
  if (drawing) return;
  drawing = true;
  requestAnimationFrame(() => {
    drawing = false;
    drawCurves();
    drawProgress();
    drawRecord();
  });
}

function follow(lastId = 0) {
  const stateLine = document.getElementById("stream-state");
  const stream = new EventStream(`${path}/events`, {
    onEvent,
    doneOn: ["ended"],
    onState: (s) => {
      stateLine.dataset.state = s;
      stateLine.textContent = {
        connecting: "connecting to the event stream…",
        open: "live",
        reconnecting: "reconnecting…",
        closed: "stream ended",
      }[s];
    },
    keepGoing: async () => {
      const r = await loadRecord();
      return r.active || LIVE.has(r.status);
    },
  });
  stream.lastId = lastId;
  state.stream = stream;
  window.hilRun.stream = stream;
  return stream.start();
}

async function act(verb) {
  const out = document.getElementById("action-error");
  out.hidden = true;
  try {
    await api(verb === "stop" ? `${path}/stop` : `${path}/resume`, { method: "POST" });
    await loadRecord();
    if (verb === "resume" && state.stream?.closed !== false) follow(state.stream?.lastId ?? 0);
  } catch (err) {
    showError(out, err);
  }
}

// Polls the record (status, epochs, times): every 2 s while the run may go on.
async function poll() {
  try {
    const r = await loadRecord();
    const live = r.active || LIVE.has(r.status);
    if (live && state.stream && state.stream.closed) follow(state.stream.lastId);
  } catch (err) {
    showError(document.getElementById("action-error"), err);
  }
  setTimeout(poll, 2000);
}

async function main() {
  setUpPage(`run:${runId}`);
  window.hilRun = { charts: { loss: lossChart, accuracy: accChart }, crossbar, stream: null };
  document.getElementById("run-id").textContent = runId || "?";
  document.getElementById("stop").addEventListener("click", () => act("stop"));
  document.getElementById("resume").addEventListener("click", () => act("resume"));
  document.addEventListener("hil:estop", () => loadRecord().catch(() => {}));
  if (!runId) {
    showError(document.getElementById("action-error"), "no run id in the address (run.html?id=RUN)");
    return;
  }
  try {
    await loadRecord();
  } catch (err) {
    showError(document.getElementById("action-error"), err);
    return;
  }
  api(`${path}/config`)
    .then((config) => {
      state.config = config;
      document.getElementById("config").textContent = JSON.stringify(config, null, 2);
      refreshCrossbar();
    })
    .catch((err) => {
      document.getElementById("config").textContent = err.message;
      refreshCrossbar();
    });
  follow(0);
  setTimeout(poll, 2000);
}

main();
