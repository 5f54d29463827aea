// The bench page: kind, limits, lease holder and expiry, armed or safe; take and release the
// lease; settle, pulse and read by hand, with the limits shown and the API's 422 message
// shown as it is when a request is refused.
import { CrossbarView } from "./crossbar.js";
import { si } from "./charts.js";
import { api, badge, duration, h, param, setPageBenches, setUpPage, showError, when } from "./common.js";

const benchId = param("id") || "";
const path = `/benches/${encodeURIComponent(benchId)}`;
const LEASE_KEY = `hil.lease.${benchId}`;
let bench = null;
let crossbar = null;

const lease = {
  get: () => sessionStorage.getItem(LEASE_KEY) || "",
  set: (t) => (t ? sessionStorage.setItem(LEASE_KEY, t) : sessionStorage.removeItem(LEASE_KEY)),
};

function range([lo, hi], unit) {
  return `${si(lo, unit)} to ${si(hi, unit)}`;
}

function drawBench() {
  const b = bench;
  document.title = `Bench ${b.id} (${b.status}) · hil-eqprop`;
  const status = document.getElementById("bench-status");
  const key = `${b.status}:${b.estop}`;
  if (status.dataset.key !== key) {
    status.dataset.key = key;
    status.replaceChildren(badge(b.status), ...(b.estop ? [" ", badge("estop")] : []));
  }
  document.getElementById("bench-desc").textContent = b.topology.description;
  let leaseText = "none (the bench is free)";
  if (b.lease) {
    leaseText = b.lease.run ? `run ${b.lease.run}` : b.lease.holder;
    if (b.lease.expires_in_s !== null && b.lease.expires_in_s !== undefined) {
      const at = Date.now() / 1000 + b.lease.expires_in_s;
      leaseText += `, expires ${when(at)} (in ${duration(b.lease.expires_in_s)})`;
    } else {
      leaseText += ", until the run ends";
    }
    if (lease.get() && !b.lease.run) leaseText += "; this tab holds a lease token";
  }
  const facts = [
    ["kind", b.kind],
    ["status", b.status === "armed" ? "armed: driven since its last safe state"
      : b.status === "safe" ? "safe: in its safe state"
        : `unconfirmed: switch off by hand: ${b.unconfirmed.join(", ")}`],
    ["emergency stop", b.estop ? `holds (pressed by ${b.estop_by}); a new lease or run clears it`
      : "not pressed"],
    ["lease", leaseText],
    ["run", b.run ? h("a", { href: `run.html?id=${encodeURIComponent(b.run)}` }, b.run) : "none"],
    ["devices", `${b.topology.n_devices} in ${b.topology.tiles.length} tiles (${b.topology.tiles
      .map((t) => `${t.rows}×${t.cols}`).join(", ")})`],
    ["pulses delivered", `${b.pulses.total} (most on one device: ${b.pulses.max_per_device}; `
      + `${b.pulses.devices_pulsed} devices pulsed)`],
  ];
  const dl = document.getElementById("bench-facts");
  dl.replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { "data-fact": k }, v)]));
  const l = b.limits;
  const rows = [
    ["max input voltage", `±${si(l.max_input_voltage, "V")}`],
    ["max nudge current", `±${si(l.max_nudge_current, "A")}`],
    ["compliance current", si(l.compliance_current, "A")],
    ["compliance voltage", si(l.compliance_voltage, "V")],
    ["pulse amplitude", range(l.pulse_amplitude, "V")],
    ["pulse width", range(l.pulse_width, "s")],
    ["pulses per device per request", `at most ${l.max_pulses_per_request}`],
  ];
  document.querySelector("#limits tbody").replaceChildren(
    ...rows.map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, v))),
  );
  const t = b.topology;
  document.getElementById("inputs-hint").textContent =
    `${t.n_input_sources} values per sample (+x then −x of ${t.n_input_sources / 2} features), `
    + `each within ±${si(l.max_input_voltage, "V")}.`;
  document.getElementById("nudges-hint").textContent =
    `${t.n_output_nodes} values per sample (V+ and V− of ${t.n_output_nodes / 2} classes), `
    + `each within ±${si(l.max_nudge_current, "A")}.`;
  document.getElementById("pulse-hint").textContent =
    `Amplitude ${range(l.pulse_amplitude, "V")}; width ${range(l.pulse_width, "s")}; `
    + `at most ${l.max_pulses_per_request} pulses per device; device ids 0 to ${t.n_devices - 1}.`;
}

let timer = null;

async function refresh() {
  clearTimeout(timer);
  const out = document.getElementById("bench-error");
  try {
    bench = await api(path);
    out.hidden = true;
    drawBench();
  } catch (err) {
    showError(out, err);
  }
  timer = setTimeout(refresh, 2000);
}

// Runs an operation of a form: its result, or the API's message in the form's error box.
async function operate(name, work) {
  const error = document.getElementById(`${name}-error`);
  const out = document.getElementById(`${name}-out`);
  error.hidden = true;
  out.replaceChildren();
  try {
    const result = await work();
    if (result !== undefined) out.replaceChildren(result);
  } catch (err) {
    showError(error, err);
    if (err.field) error.dataset.field = err.field;
  }
  refresh();
}

function parseJson(value, what) {
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new Error(`${what} is not JSON: ${err.message}`);
  }
}

function samples(value, what) {
  const parsed = parseJson(value, what);
  return Array.isArray(parsed) && parsed.length && !Array.isArray(parsed[0]) ? [parsed] : parsed;
}

function numbers(value, what) {
  const items = value.split(/[\s,]+/).filter(Boolean).map(Number);
  if (items.some((x) => !Number.isFinite(x))) throw new Error(`${what}: numbers separated by commas`);
  return items;
}

function table(headers, rows) {
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, ...headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, ...rows.map((r) => h("tr", {}, ...r.map((x) => h("td", {}, x)))))));
}

function setUp() {
  document.getElementById("bench-id").textContent = benchId || "?";
  setPageBenches([benchId]);
  const leaseForm = document.getElementById("lease-form");
  leaseForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    operate("lease", async () => {
      const body = { holder: leaseForm.holder.value };
      if (leaseForm.ttl.value) body.ttl_s = Number(leaseForm.ttl.value);
      const granted = await api(`${path}/lease`, { method: "POST", body });
      lease.set(granted.lease_token);
      return `Leased to ${granted.holder} for ${duration(granted.ttl_s)}.`;
    });
  });
  document.getElementById("renew").addEventListener("click", () =>
    operate("lease", async () => {
      const body = leaseForm.ttl.value ? { ttl_s: Number(leaseForm.ttl.value) } : undefined;
      const renewed = await api(`${path}/lease/renew`, { method: "POST", body, lease: lease.get() });
      return `Renewed for ${duration(renewed.ttl_s)}.`;
    }));
  document.getElementById("release").addEventListener("click", () =>
    operate("lease", async () => {
      const ended = await api(`${path}/lease`, { method: "DELETE", lease: lease.get() });
      lease.set("");
      return ended.released ? `Released; the bench ${ended.confirmed ? "confirmed" : "did NOT confirm"} its safe state.`
        : "No lease was held.";
    }));

  const settleForm = document.getElementById("settle-form");
  document.getElementById("fill-inputs").addEventListener("click", () => {
    const v = Number(settleForm.feature.value);
    const n = bench ? bench.topology.n_input_sources / 2 : 0;
    settleForm.inputs.value = JSON.stringify([[...Array(n).fill(v), ...Array(n).fill(-v)]]);
  });
  settleForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    operate("settle", async () => {
      const body = { inputs: samples(settleForm.inputs.value, "the inputs") };
      if (settleForm.nudges.value.trim()) body.nudges = samples(settleForm.nudges.value, "the nudges");
      const m = await api(`${path}/settle`, { method: "POST", body, lease: lease.get() });
      return table(["sample", "outputs V+ − V− (V)", "compliance nodes", "overflow nodes", "flagged"],
        m.outputs.map((row, k) => [k, row.map((x) => x.toFixed(3)).join(", "),
          m.compliance[k].join(", ") || "–", m.overflow[k].join(", ") || "–",
          m.flagged[k] ? "⚠ yes" : "no"]));
    });
  });

  const pulseForm = document.getElementById("pulse-form");
  pulseForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    operate("pulse", async () => {
      const body = {
        device_ids: numbers(pulseForm.devices.value, "device ids"),
        counts: numbers(pulseForm.counts.value, "counts"),
        amplitude_v: Number(pulseForm.amplitude.value),
        width_s: Number(pulseForm.width.value),
      };
      const r = await api(`${path}/pulses`, { method: "POST", body, lease: lease.get() });
      return h("div", {},
        table(["device", "applied", "refused"], r.device_ids.map((d, k) => [d, r.applied[k], r.refused[k]])),
        h("p", {}, `${r.total_pulses} pulses delivered.`),
        ...r.notes.map((n) => h("p", { class: "note" }, n)));
    });
  });

  document.getElementById("read").addEventListener("click", () =>
    operate("read", async () => {
      const g = await api(`${path}/conductances`, { lease: lease.get() });
      if (!crossbar) {
        crossbar = new CrossbarView(document.getElementById("read-map"),
          { pulses: false, label: "the bench's conductances" });
      }
      crossbar.update({ tiles: g.tiles });
      return `Read ${g.tiles.reduce((n, t) => n + t.rows * t.cols, 0)} devices at ${when(Date.now() / 1000)}.`;
    }));
  document.addEventListener("hil:estop", refresh);
}

setUpPage(`bench:${benchId}`);
setUp();
refresh();
