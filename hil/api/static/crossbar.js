// The crossbar view (after arc2control's): per tile a heatmap of conductance (log scale, or
// resistance at the press of a button) and one of pulse counts, worn-out and stuck devices
// marked, and a histogram of every device's conductance.
//
// Worn out: a device's pulse count reached the endurance of its device model (the API's
// `endurance`). Stuck: pulsed since the previous snapshot and its conductance did not move
// (known from the second snapshot on; a device held at a bound by pulses towards it counts).
import { Heatmap, colourBar, histogram, maxOf, si } from "./charts.js";
import { h } from "./common.js";

export class CrossbarView {
  constructor(container, { pulses = true, label = "crossbar" } = {}) {
    this.pulses = pulses;
    this.mode = "conductance";
    this.maps = new Map();
    this.snapshot = null;
    this.previous = null;
    this.toggle = h(
      "button",
      { type: "button", class: "quiet", "aria-pressed": "false", onclick: () => this.flip() },
      "Show resistance",
    );
    this.scaleLabel = h("span", { class: "scale-label" });
    this.gBar = h("div", { class: "bar-holder" });
    this.pBar = h("div", { class: "bar-holder" });
    this.readout = h("p", { class: "readout", "aria-live": "polite" },
      "Point at a device, or focus a heatmap and use the arrow keys.");
    this.tiles = h("div", { class: "tiles" });
    this.hist = h("div", { class: "hist-holder" });
    this.summary = h("p", { class: "marks-summary", "aria-live": "polite" });
    const legend = h(
      "div",
      { class: "legend-row" },
      h("div", {}, this.scaleLabel, this.gBar),
      pulses ? h("div", {}, h("span", { class: "scale-label" }, "pulses, log scale"), this.pBar) : null,
      h(
        "p",
        { class: "marks-legend" },
        h("span", { class: "mark-sample" }, "✕"), " worn out (pulses ≥ endurance)   ",
        h("span", { class: "mark-sample" }, "◯"),
        " stuck (pulsed since the previous snapshot, conductance unchanged)",
      ),
    );
    this.root = h(
      "div",
      { class: "crossbar", "aria-label": label },
      h("div", { class: "toolbar" }, this.toggle),
      legend,
      this.readout,
      this.tiles,
      h("h3", {}, "Conductance histogram"),
      this.hist,
      this.summary,
    );
    container.append(this.root);
  }

  flip() {
    this.mode = this.mode === "conductance" ? "resistance" : "conductance";
    this.toggle.setAttribute("aria-pressed", String(this.mode === "resistance"));
    this.toggle.textContent = this.mode === "resistance" ? "Show conductance" : "Show resistance";
    this.render();
  }

  // tiles: the API's [{tile, rows, cols, conductances}]; counts: pulses by device id
  update({ tiles, counts = null, endurance = null, gBounds = null }) {
    let first = 0;
    const layout = tiles.map((t) => {
      const entry = { ...t, first };
      first += t.rows * t.cols;
      return entry;
    });
    const g = new Float64Array(first);
    for (const t of layout) {
      for (let r = 0; r < t.rows; r += 1) {
        for (let c = 0; c < t.cols; c += 1) g[t.first + r * t.cols + c] = t.conductances[r][c];
      }
    }
    const total = counts ? counts.reduce((a, n) => a + Math.abs(n), 0) : null;
    const snapshot = { layout, g, counts, endurance, gBounds, total };
    const prev = this.snapshot;
    // the previous snapshot moves on only when pulses were delivered in between
    if (prev && prev.counts && counts && prev.g.length === g.length && prev.total !== total) {
      this.previous = prev;
    }
    this.snapshot = snapshot;
    snapshot.worn = new Set();
    snapshot.stuck = new Set();
    if (counts && endurance) {
      counts.forEach((n, d) => {
        if (Math.abs(n) >= endurance) snapshot.worn.add(d);
      });
    }
    if (this.previous && counts) {
      const before = this.previous;
      for (let d = 0; d < g.length; d += 1) {
        const pulsed = Math.abs(counts[d] ?? 0) > Math.abs(before.counts[d] ?? 0);
        if (pulsed && Math.abs(g[d] - before.g[d]) <= 1e-12 * Math.abs(g[d])) snapshot.stuck.add(d);
      }
    }
    this.render();
  }

  bounds() {
    const s = this.snapshot;
    let [lo, hi] = s.gBounds || [Infinity, -Infinity];
    if (!s.gBounds) {
      for (const v of s.g) {
        if (v > 0) {
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
      }
      if (!Number.isFinite(lo)) [lo, hi] = [1e-7, 1e-5];
      if (hi <= lo) [lo, hi] = [lo / 2, hi * 2];
    }
    return this.mode === "conductance"
      ? { lo: Math.log10(lo), hi: Math.log10(hi), unit: "S", value: (g) => g }
      : { lo: Math.log10(1 / hi), hi: Math.log10(1 / lo), unit: "Ω", value: (g) => 1 / g };
  }

  render() {
    const s = this.snapshot;
    if (!s) return;
    const { lo, hi, unit, value } = this.bounds();
    const scale = (v) => (Math.log10(value(v)) - lo) / (hi - lo);
    const fmt = (x) => si(10 ** x, unit);
    this.scaleLabel.textContent =
      this.mode === "conductance" ? "conductance, log scale" : "resistance, log scale";
    colourBar(this.gBar, lo, hi, fmt);
    const peak = s.counts ? maxOf(s.counts.map(Math.abs), 1) : 1;
    if (this.pulses) colourBar(this.pBar, 0, Math.log10(1 + peak), (x) => String(Math.round(10 ** x - 1)));
    const seen = new Set();
    for (const t of s.layout) {
      const key = `${t.tile}:${t.rows}x${t.cols}`;
      seen.add(key);
      let entry = this.maps.get(key);
      if (!entry) {
        const box = h("figure", { class: "tile", "data-tile": t.tile });
        box.append(h("figcaption", {}, `Tile ${t.tile}: ${t.rows} rows × ${t.cols} columns`));
        const pair = h("div", { class: "tile-maps" });
        const gHolder = h("div", { class: "map-holder" }, h("div", { class: "map-title" }, "conductance"));
        const readout = (r, c) => this.describe(t.tile, r, c);
        const gMap = new Heatmap(gHolder, { rows: t.rows, cols: t.cols,
          label: `Tile ${t.tile} conductance`, onReadout: readout });
        gMap.element.dataset.kind = "conductance";
        gMap.element.dataset.tile = t.tile;
        pair.append(gHolder);
        let pMap = null;
        if (this.pulses) {
          const pHolder = h("div", { class: "map-holder" }, h("div", { class: "map-title" }, "pulses"));
          pMap = new Heatmap(pHolder, { rows: t.rows, cols: t.cols,
            label: `Tile ${t.tile} pulse counts`, onReadout: readout });
          pMap.element.dataset.kind = "pulses";
          pMap.element.dataset.tile = t.tile;
          pair.append(pHolder);
        }
        box.append(pair);
        this.tiles.append(box);
        entry = { box, gMap, pMap, gTitle: gHolder.firstChild };
        this.maps.set(key, entry);
      }
      entry.gTitle.textContent = this.mode;
      entry.gMap.setValues(t.conductances, scale);
      const marks = [];
      for (let r = 0; r < t.rows; r += 1) {
        for (let c = 0; c < t.cols; c += 1) {
          const d = t.first + r * t.cols + c;
          if (s.worn.has(d)) marks.push({ r, c, kind: "worn" });
          else if (s.stuck.has(d)) marks.push({ r, c, kind: "stuck" });
        }
      }
      entry.gMap.setMarks(marks);
      if (entry.pMap && s.counts) {
        const rows = [];
        for (let r = 0; r < t.rows; r += 1) {
          rows.push(s.counts.slice(t.first + r * t.cols, t.first + (r + 1) * t.cols));
        }
        const top = Math.log10(1 + peak);
        entry.pMap.setValues(rows, (n) => Math.log10(1 + Math.abs(n)) / top);
        entry.pMap.setMarks(marks);
      }
    }
    for (const [key, entry] of this.maps) {
      if (!seen.has(key)) {
        entry.box.remove();
        this.maps.delete(key);
      }
    }
    histogram(this.hist, Array.from(s.g, (g) => Math.log10(value(g))), {
      lo, hi, bins: 40, label: `${this.mode} (log scale), devices per bin`, format: fmt,
    });
    const worn = [...s.worn];
    const stuck = [...s.stuck];
    const list = (ids) => (ids.length ? ` (devices ${ids.slice(0, 12).join(", ")}${ids.length > 12 ? ", …" : ""})` : "");
    this.summary.textContent = [
      `${s.g.length} devices.`,
      s.endurance ? `Worn out: ${worn.length}${list(worn)} of an endurance of ${s.endurance} pulses.`
        : "Worn out: none known (no endurance configured).",
      this.previous ? `Stuck: ${stuck.length}${list(stuck)}.`
        : "Stuck: known from the next snapshot on.",
    ].join(" ");
    this.summary.dataset.worn = worn.length;
    this.summary.dataset.stuck = stuck.length;
  }

  describe(tile, r, c) {
    const s = this.snapshot;
    const t = s.layout.find((x) => x.tile === tile);
    const d = t.first + r * t.cols + c;
    const g = s.g[d];
    const parts = [`Tile ${tile}, row ${r}, column ${c}: device ${d}`,
      `G = ${si(g, "S")}`, `R = ${si(1 / g, "Ω")}`];
    if (s.counts) parts.push(`${s.counts[d] ?? 0} pulses`);
    if (s.worn.has(d)) parts.push("worn out");
    if (s.stuck.has(d)) parts.push("stuck");
    this.readout.textContent = parts.join(" · ");
  }
}
