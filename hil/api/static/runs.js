// The runs page: every run with its status, bench, best and last test accuracy and times;
// start a run from a config; stop and resume runs.
import { maxOf } from "./charts.js";
import { api, badge, h, percent, setUpPage, showError, when } from "./common.js";

const PAGE = 50;
const REFRESH_MS = 2000;
const state = { offset: 0, status: "", rows: new Map(), accuracy: new Map() };

const tbody = document.querySelector("#runs-table tbody");
const errorBox = document.getElementById("runs-error");

async function loadForm() {
  const form = document.getElementById("start-form");
  const [benches, configs] = await Promise.all([api("/benches"), api("/configs")]);
  form.bench.replaceChildren(...benches.map((b) => h("option", { value: b.id }, b.id)));
  const own = h("optgroup", { label: "a bench's own config" },
    ...configs.benches.map((id) => h("option", { value: id }, `${id} (the bench's)`)));
  const shipped = h("optgroup", { label: "shipped configs" },
    ...configs.shipped.map((name) => h("option", { value: name }, name)));
  form.config.replaceChildren(own, shipped);
  form.bench.addEventListener("change", () => {
    if (configs.benches.includes(form.bench.value)) form.config.value = form.bench.value;
  });
  if (benches.length) form.config.value = benches[0].id;
}

async function start(ev) {
  ev.preventDefault();
  const form = ev.target;
  const out = document.getElementById("start-error");
  out.hidden = true;
  const body = { bench: form.bench.value, config: form.config.value };
  if (form.epochs.value) body.epochs = Number(form.epochs.value);
  if (form.seed.value) body.seed = Number(form.seed.value);
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const run = await api("/runs", { method: "POST", body });
    location.href = `run.html?id=${encodeURIComponent(run.id)}`;
  } catch (err) {
    showError(out, err);
    button.disabled = false;
  }
}

// Best and last test accuracy, from the run's metrics (read again when an epoch ends).
async function accuracy(run) {
  const key = `${run.epochs_done}:${run.status}`;
  const known = state.accuracy.get(run.id);
  if (known && known.key === key) return known;
  const metrics = run.epochs_done ? await api(`/runs/${encodeURIComponent(run.id)}/metrics`) : [];
  const tests = metrics.map((m) => m.test_accuracy).filter(Number.isFinite);
  const value = { key, best: tests.length ? maxOf(tests) : NaN, last: tests.at(-1) ?? NaN };
  state.accuracy.set(run.id, value);
  return value;
}

async function act(run, verb, cell) {
  try {
    const id = encodeURIComponent(run.id);
    await api(verb === "stop" ? `/runs/${id}/stop` : `/runs/${id}/resume`, { method: "POST" });
    refresh();
  } catch (err) {
    cell.querySelector(".row-error")?.remove();
    cell.append(h("span", { class: "row-error error", role: "alert" }, err.message));
  }
}

function actions(run, cell) {
  const buttons = [];
  if (run.active || run.status === "running" || run.status === "queued") {
    buttons.push(h("button", { type: "button", class: "quiet", onclick: () => act(run, "stop", cell),
      "aria-label": `Stop run ${run.id}` }, "Stop"));
  }
  if (!run.active && (run.status === "stopped" || run.status === "interrupted")) {
    buttons.push(h("button", { type: "button", class: "quiet", onclick: () => act(run, "resume", cell),
      "aria-label": `Resume run ${run.id}` }, "Resume"));
  }
  return buttons;
}

function row(run) {
  let tr = state.rows.get(run.id);
  if (!tr) {
    tr = h("tr", { "data-run": run.id });
    for (let k = 0; k < 9; k += 1) tr.append(h(k === 0 ? "th" : "td", k === 0 ? { scope: "row" } : {}));
    tr.cells[0].append(h("a", { href: `run.html?id=${encodeURIComponent(run.id)}` }, run.id));
    tr.cells[0].append(h("div", { class: "sub" }, run.name));
    state.rows.set(run.id, tr);
  }
  const c = tr.cells;
  if (c[1].dataset.status !== run.status) {
    c[1].dataset.status = run.status;
    c[1].replaceChildren(badge(run.status));
  }
  const bench = run.bench
    ? h("a", { href: `bench.html?id=${encodeURIComponent(run.bench)}` }, run.bench)
    : `– (${run.bench_kind})`;
  if (c[2].dataset.bench !== String(run.bench)) {
    c[2].dataset.bench = String(run.bench);
    c[2].replaceChildren(bench);
  }
  c[3].textContent = `${run.epochs_done} / ${run.epochs ?? "?"}`;
  c[6].textContent = when(run.started_at);
  c[7].textContent = when(run.ended_at);
  const verbs = `${run.active}:${run.status}`;
  if (c[8].dataset.verbs !== verbs) {
    c[8].dataset.verbs = verbs;
    c[8].replaceChildren(...actions(run, c[8]));
  }
  tr.classList.toggle("has-error", Boolean(run.error));
  tr.title = run.error || "";
  return tr;
}

let timer = null;

async function refresh() {
  clearTimeout(timer);
  try {
    const query = new URLSearchParams({ limit: PAGE, offset: state.offset });
    if (state.status) query.set("status", state.status);
    const page = await api(`/runs?${query}`);
    errorBox.hidden = true;
    const rows = page.runs.map(row);
    const order = rows.map((tr) => tr.dataset.run).join(" ");
    const shown = Array.from(tbody.rows, (tr) => tr.dataset.run).join(" ");
    if (order !== shown) tbody.replaceChildren(...rows); // rows kept in place keep their focus
    if (!rows.length) {
      tbody.replaceChildren(h("tr", {}, h("td", { colspan: 9, class: "empty" }, "No runs.")));
    }
    const first = page.total ? page.offset + 1 : 0;
    document.getElementById("runs-count").textContent =
      `${first}–${page.offset + page.runs.length} of ${page.total}`;
    document.getElementById("newer").disabled = page.offset === 0;
    document.getElementById("older").disabled = page.offset + page.runs.length >= page.total;
    await Promise.all(
      page.runs.map(async (run) => {
        const a = await accuracy(run);
        const tr = state.rows.get(run.id);
        tr.cells[4].textContent = percent(a.best);
        tr.cells[5].textContent = percent(a.last);
      }),
    );
  } catch (err) {
    showError(errorBox, err);
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

setUpPage("runs");
document.getElementById("start-form").addEventListener("submit", start);
document.getElementById("status-filter").addEventListener("change", (ev) => {
  state.status = ev.target.value;
  state.offset = 0;
  refresh();
});
document.getElementById("newer").addEventListener("click", () => {
  state.offset = Math.max(0, state.offset - PAGE);
  refresh();
});
document.getElementById("older").addEventListener("click", () => {
  state.offset += PAGE;
  refresh();
});
document.addEventListener("hil:estop", refresh);
loadForm().catch((err) => showError(document.getElementById("start-error"), err));
refresh();
