// Charts of the dashboard, without libraries: a line chart, a crossbar heatmap (a canvas of
// one pixel per device under an SVG of marks), a histogram and a colour bar (SVG), all
// coloured with viridis.

export const SVG_NS = "http://www.w3.org/2000/svg";

// matplotlib's viridis, 256 entries (van der Walt and Smith, CC0): perceptually uniform and
// readable with red-green colour blindness.
const VIRIDIS_HEX =
  "44015444025645045745055946075a46085c460a5d460b5e470d60470e61471063471164471365481467481668481769" +
  "48186a481a6c481b6d481c6e481d6f481f70482071482173482374482475482576482677482878482979472a7a472c7a" +
  "472d7b472e7c472f7d46307e46327e46337f463480453581453781453882443983443a83443b84433d84433e85423f85" +
  "4240864241864142874144874045884046883f47883f48893e49893e4a893e4c8a3d4d8a3d4e8a3c4f8a3c508b3b518b" +
  "3b528b3a538b3a548c39558c39568c38588c38598c375a8c375b8d365c8d365d8d355e8d355f8d34608d34618d33628d" +
  "33638d32648e32658e31668e31678e31688e30698e306a8e2f6b8e2f6c8e2e6d8e2e6e8e2e6f8e2d708e2d718e2c718e" +
  "2c728e2c738e2b748e2b758e2a768e2a778e2a788e29798e297a8e297b8e287c8e287d8e277e8e277f8e27808e26818e" +
  "26828e26828e25838e25848e25858e24868e24878e23888e23898e238a8d228b8d228c8d228d8d218e8d218f8d21908d" +
  "21918c20928c20928c20938c1f948c1f958b1f968b1f978b1f988b1f998a1f9a8a1e9b8a1e9c891e9d891f9e891f9f88" +
  "1fa0881fa1881fa1871fa28720a38620a48621a58521a68522a78522a88423a98324aa8325ab8225ac8226ad8127ad81" +
  "28ae8029af7f2ab07f2cb17e2db27d2eb37c2fb47c31b57b32b67a34b67935b77937b87838b9773aba763bbb753dbc74" +
  "3fbc7340bd7242be7144bf7046c06f48c16e4ac16d4cc26c4ec36b50c46a52c56954c56856c66758c7655ac8645cc863" +
  "5ec96260ca6063cb5f65cb5e67cc5c69cd5b6ccd5a6ece5870cf5773d05675d05477d1537ad1517cd2507fd34e81d34d" +
  "84d44b86d54989d5488bd6468ed64590d74393d74195d84098d83e9bd93c9dd93ba0da39a2da37a5db36a8db34aadc32" +
  "addc30b0dd2fb2dd2db5de2bb8de29bade28bddf26c0df25c2df23c5e021c8e020cae11fcde11dd0e11cd2e21bd5e21a" +
  "d8e219dae319dde318dfe318e2e418e5e419e7e419eae51aece51befe51cf1e51df4e61ef6e620f8e621fbe723fde725";

export const VIRIDIS = Array.from({ length: 256 }, (_, i) => `#${VIRIDIS_HEX.slice(6 * i, 6 * i + 6)}`);

// Okabe and Ito's colours (distinguishable with any colour vision) for the curves; each
// curve also has its own dash pattern and markers.
export const SERIES_COLOURS = { train: "#0072b2", test: "#d55e00", extra: "#009e73" };

// The largest of `values` (and `start`), without spreading a long array into arguments.
export function maxOf(values, start = -Infinity) {
  let best = start;
  for (const v of values) if (v > best) best = v;
  return best;
}

// Most points a curve draws (longer ones are thinned evenly, the last point kept).
const MAX_DRAWN = 2000;

// The entry of viridis for t in [0, 1] (clamped), -1 for no number.
function viridisIndex(t) {
  return Number.isFinite(t) ? Math.round(Math.min(1, Math.max(0, t)) * 255) : -1;
}

export function viridis(t) {
  const i = viridisIndex(t);
  return i < 0 ? "#bdbdbd" : VIRIDIS[i];
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) node.setAttribute(key, String(value));
  }
  for (const child of children) {
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

const PREFIXES = [
  [1e9, "G"], [1e6, "M"], [1e3, "k"], [1, ""], [1e-3, "m"], [1e-6, "µ"], [1e-9, "n"],
  [1e-12, "p"],
];

// 2.35e-6 -> "2.35 µS"
export function si(value, unit = "", digits = 3) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  if (value === 0) return `0 ${unit}`.trim();
  const magnitude = Math.abs(value);
  const [scale, prefix] = PREFIXES.find(([s]) => magnitude >= s * 0.9995) || PREFIXES.at(-1);
  return `${Number((value / scale).toPrecision(digits))} ${prefix}${unit}`.trim();
}

function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const step = 10 ** Math.floor(Math.log10(raw));
  const nice = [1, 2, 2.5, 5, 10].map((m) => m * step).find((s) => (hi - lo) / s <= count) || raw;
  const ticks = [];
  for (let v = Math.ceil(lo / nice - 1e-9) * nice; v <= hi + nice * 1e-9; v += nice) {
    ticks.push(Number(v.toPrecision(12)));
  }
  return ticks;
}

// A line chart of a few series, redrawn at most once a frame.
//   series: [{key, label, colour, dash, marker: "circle" | "square" | null}]
export class LineChart {
  constructor(container, { title, xLabel, yLabel, yRange = null, series }) {
    this.series = series;
    this.data = Object.fromEntries(series.map((s) => [s.key, []]));
    this.yRange = yRange;
    this.xMin = 0;
    this.xMaxHint = 1;
    this.size = { w: 560, h: 260, left: 56, right: 12, top: 12, bottom: 40 };
    const figure = document.createElement("figure");
    figure.className = "chart";
    const caption = document.createElement("figcaption");
    caption.textContent = title;
    this.svg = el("svg", {
      viewBox: `0 0 ${this.size.w} ${this.size.h}`,
      role: "img",
      "aria-label": title,
      class: "line-chart",
    });
    this.xLabel = xLabel;
    this.yLabel = yLabel;
    const legend = document.createElement("ul");
    legend.className = "legend";
    for (const s of series) {
      const item = document.createElement("li");
      const sample = el("svg", { width: 34, height: 12, "aria-hidden": "true" });
      sample.append(
        el("line", {
          x1: 2, y1: 6, x2: 32, y2: 6, stroke: s.colour, "stroke-width": 2.5,
          "stroke-dasharray": s.dash || null,
        }),
      );
      if (s.marker) sample.append(marker(s.marker, 17, 6, s.colour));
      item.append(sample, document.createTextNode(` ${s.label}`));
      legend.append(item);
    }
    figure.append(caption, this.svg, legend);
    container.append(figure);
    this.pending = false;
    this.draw();
  }

  set(key, points) {
    this.data[key] = points;
    this.schedule();
  }

  setXMax(x) {
    this.xMaxHint = Math.max(1, x);
    this.schedule();
  }

  points(key) {
    return this.data[key].length;
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  draw() {
    const { w, h, left, right, top, bottom } = this.size;
    const all = Object.values(this.data).flat();
    const xMax = maxOf(all.map((p) => p[0]), this.xMaxHint);
    let [yLo, yHi] = this.yRange || [Infinity, -Infinity];
    if (!this.yRange) {
      for (const [, y] of all) {
        if (Number.isFinite(y)) {
          yLo = Math.min(yLo, y);
          yHi = Math.max(yHi, y);
        }
      }
      if (!Number.isFinite(yLo)) [yLo, yHi] = [0, 1];
      if (yHi - yLo < 1e-12) [yLo, yHi] = [yLo - 0.5, yHi + 0.5];
      const pad = 0.05 * (yHi - yLo);
      yLo = Math.max(0, yLo - pad);
      yHi += pad;
    }
    const px = (x) => left + ((x - this.xMin) / (xMax - this.xMin || 1)) * (w - left - right);
    const py = (y) => top + (1 - (y - yLo) / (yHi - yLo || 1)) * (h - top - bottom);
    const parts = [];
    const axes = el("g", { class: "axes" });
    for (const t of niceTicks(yLo, yHi)) {
      axes.append(
        el("line", { x1: left, x2: w - right, y1: py(t), y2: py(t), class: "grid" }),
        el("text", { x: left - 6, y: py(t) + 4, "text-anchor": "end" }, formatTick(t)),
      );
    }
    for (const t of niceTicks(this.xMin, xMax, 8)) {
      axes.append(
        el("line", { x1: px(t), x2: px(t), y1: h - bottom, y2: h - bottom + 4, class: "tick" }),
        el("text", { x: px(t), y: h - bottom + 16, "text-anchor": "middle" }, formatTick(t)),
      );
    }
    axes.append(
      el("line", { x1: left, x2: w - right, y1: h - bottom, y2: h - bottom, class: "axis" }),
      el("line", { x1: left, x2: left, y1: top, y2: h - bottom, class: "axis" }),
      el("text", { x: (left + w - right) / 2, y: h - 4, "text-anchor": "middle" }, this.xLabel),
      el(
        "text",
        { x: 12, y: (top + h - bottom) / 2, transform: `rotate(-90 12 ${(top + h - bottom) / 2})`,
          "text-anchor": "middle" },
        this.yLabel,
      ),
    );
    parts.push(axes);
    for (const s of this.series) {
      const pts = this.data[s.key].filter(([, y]) => Number.isFinite(y));
      const every = Math.ceil(pts.length / MAX_DRAWN);
      const drawn = every > 1 ? pts.filter((_, k) => k % every === 0 || k === pts.length - 1) : pts;
      const group = el("g", { class: "series", "data-series": s.key, "data-points": pts.length,
        "data-drawn": drawn.length });
      group.append(
        el("polyline", {
          points: drawn.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(" "),
          fill: "none",
          stroke: s.colour,
          "stroke-width": 2,
          "stroke-dasharray": s.dash || null,
        }),
      );
      if (s.marker) {
        for (const [x, y] of drawn) group.append(marker(s.marker, px(x), py(y), s.colour));
      }
      parts.push(group);
    }
    this.svg.replaceChildren(...parts);
  }
}

function formatTick(t) {
  return Math.abs(t) >= 1000 || (Math.abs(t) < 0.01 && t !== 0) ? t.toExponential(0) : String(t);
}

function marker(kind, x, y, colour) {
  if (kind === "square") {
    return el("rect", { x: x - 3.5, y: y - 3.5, width: 7, height: 7, fill: "#fff", stroke: colour,
      "stroke-width": 2 });
  }
  return el("circle", { cx: x, cy: y, r: 3.5, fill: colour });
}

// One tile of a crossbar: rows by cols devices, row r and column c at x = c, y = r.
//
// The cells are the pixels of a <canvas> as large as the tile (one pixel a device, written
// with putImageData) and scaled up by CSS with `image-rendering: pixelated`: a founding-paper
// network has 159,040 devices, far too many for one DOM node each. Over it an SVG in the
// same coordinates (one unit a device) holds the cursor and the marks: worn-out devices carry
// a cross and stuck ones a ring (shapes, so that no colour has to be told apart), all the
// marks of a kind in one <path>, so that even thousands of them stay three nodes.
// Arrow keys move a cursor whose device `onReadout` shows; so does pointing.
//
// Size: a device is drawn `cellSize` CSS pixels square: 3 to 8 px so that a tile is about
// 320 px wide, but smaller where that would make the tile taller than MAX_HEIGHT, down to
// one pixel a device and no smaller (a 1570-row tile is 1570 px tall: every device keeps a
// pixel of its own, and the readout names the device under the pointer exactly at any size).
const MAX_HEIGHT = 720;
// Smallest size on screen (CSS px) of a mark and of the cursor: around a one-pixel device
// they spill over its neighbours rather than vanish.
const MIN_MARK = 6;
// viridis as bytes for ImageData (r, g, b per entry), and the grey of a value with no colour
const VIRIDIS_RGB = Uint8Array.from(VIRIDIS_HEX.match(/../g), (x) => parseInt(x, 16));
const NO_VALUE_RGB = [0xbd, 0xbd, 0xbd];

export function cellSize(rows, cols) {
  const wide = Math.min(8, Math.max(3, Math.floor(320 / cols)));
  return Math.max(1, Math.min(wide, Math.floor(MAX_HEIGHT / rows)));
}

// A number for an SVG path: at most three decimals, no trailing zeros.
const num = (x) => String(Number(x.toFixed(3)));

export class Heatmap {
  constructor(container, { rows, cols, label, onReadout }) {
    this.rows = rows;
    this.cols = cols;
    this.values = null;
    this.onReadout = onReadout;
    this.cell = cellSize(rows, cols);
    // the focusable element: it carries the role, the label and the keys
    this.element = document.createElement("div");
    this.element.className = "heatmap";
    this.element.tabIndex = 0;
    this.element.setAttribute("role", "img");
    this.element.setAttribute("aria-label",
      `${label}: ${rows} rows by ${cols} columns; arrow keys move the cursor`);
    Object.assign(this.element.dataset, { rows, cols, cell: this.cell });
    this.canvas = document.createElement("canvas");
    this.canvas.className = "cells";
    this.canvas.width = cols;
    this.canvas.height = rows;
    this.canvas.style.width = `${cols * this.cell}px`;
    this.context = this.canvas.getContext("2d");
    this.image = this.context.createImageData(cols, rows); // reused by every setValues
    this.overlay = el("svg", { class: "overlay", viewBox: `0 0 ${cols} ${rows}`,
      preserveAspectRatio: "none", "aria-hidden": "true" });
    this.worn = el("path", { class: "mark worn", "data-count": 0 });
    this.wornHalo = el("path", { class: "mark worn-halo" });
    this.stuck = el("path", { class: "mark stuck", "data-count": 0 });
    // the cursor: a white frame in a black one, at least MIN_MARK px across, moved by transform
    const pad = Math.max(0, (MIN_MARK / this.cell - 1) / 2);
    const frame = { x: -pad, y: -pad, width: 1 + 2 * pad, height: 1 + 2 * pad };
    this.cursor = el("g", { class: "cursor", visibility: "hidden" },
      el("rect", { ...frame, class: "cursor-halo" }), el("rect", { ...frame, class: "cursor-frame" }));
    this.overlay.append(this.wornHalo, this.worn, this.stuck, this.cursor);
    this.element.append(this.canvas, this.overlay);
    this.at = [0, 0];
    this.element.addEventListener("mousemove", (ev) => {
      const box = this.canvas.getBoundingClientRect();
      const c = Math.floor(((ev.clientX - box.left) / box.width) * cols);
      const r = Math.floor(((ev.clientY - box.top) / box.height) * rows);
      this.move(r, c);
    });
    this.element.addEventListener("keydown", (ev) => {
      const [r, c] = this.at;
      const moves = {
        ArrowUp: [r - 1, c], ArrowDown: [r + 1, c], ArrowLeft: [r, c - 1], ArrowRight: [r, c + 1],
        PageUp: [r - 10, c], PageDown: [r + 10, c], Home: [r, 0], End: [r, cols - 1],
      };
      if (moves[ev.key]) {
        ev.preventDefault();
        this.move(...moves[ev.key]);
      }
    });
    this.element.addEventListener("focus", () => this.move(...this.at));
    container.append(this.element);
  }

  move(r, c) {
    r = Math.min(this.rows - 1, Math.max(0, r));
    c = Math.min(this.cols - 1, Math.max(0, c));
    this.at = [r, c];
    this.cursor.setAttribute("transform", `translate(${c} ${r})`);
    this.cursor.setAttribute("visibility", "visible");
    Object.assign(this.cursor.dataset, { row: r, col: c });
    if (this.onReadout) this.onReadout(r, c);
  }

  // values: rows arrays of cols numbers; scale(v) -> [0, 1] (outside: clamped; not a
  // number: grey)
  setValues(values, scale) {
    this.values = values;
    const px = this.image.data;
    let i = 0;
    for (let r = 0; r < this.rows; r += 1) {
      const row = values[r] || [];
      for (let c = 0; c < this.cols; c += 1) {
        const k = viridisIndex(scale(row[c]));
        if (k < 0) {
          [px[i], px[i + 1], px[i + 2]] = NO_VALUE_RGB;
        } else {
          px[i] = VIRIDIS_RGB[3 * k];
          px[i + 1] = VIRIDIS_RGB[3 * k + 1];
          px[i + 2] = VIRIDIS_RGB[3 * k + 2];
        }
        px[i + 3] = 255;
        i += 4;
      }
    }
    this.context.putImageData(this.image, 0, 0);
  }

  // marks: [{r, c, kind: "worn" | "stuck"}]
  setMarks(marks) {
    // half the size of a mark, in devices: a cross nearly fills a large cell, and is at
    // least MIN_MARK px across on a small one
    const m = Math.max(0.35, MIN_MARK / 2 / this.cell);
    const ring = 0.85 * m;
    const worn = [];
    const stuck = [];
    for (const { r, c, kind } of marks) {
      const x = c + 0.5;
      const y = r + 0.5;
      if (kind === "worn") {
        worn.push(`M${num(x - m)} ${num(y - m)}L${num(x + m)} ${num(y + m)}` +
          `M${num(x + m)} ${num(y - m)}L${num(x - m)} ${num(y + m)}`);
      } else {
        stuck.push(`M${num(x - ring)} ${num(y)}a${num(ring)} ${num(ring)} 0 1 0 ${num(2 * ring)} 0` +
          `a${num(ring)} ${num(ring)} 0 1 0 ${num(-2 * ring)} 0z`);
      }
    }
    const draw = (path, parts) => {
      if (parts.length) path.setAttribute("d", parts.join(""));
      else path.removeAttribute("d");
    };
    draw(this.wornHalo, worn);
    draw(this.worn, worn);
    draw(this.stuck, stuck);
    this.worn.dataset.count = worn.length;
    this.stuck.dataset.count = stuck.length;
  }
}

// A colour bar: lo to hi with three labels.
export function colourBar(container, lo, hi, format) {
  const svg = el("svg", { class: "colour-bar", viewBox: "0 0 260 34", role: "img",
    "aria-label": `colour scale from ${format(lo)} to ${format(hi)}` });
  for (let i = 0; i < 64; i += 1) {
    svg.append(el("rect", { x: 10 + i * 3.75, y: 2, width: 3.8, height: 14, fill: viridis(i / 63) }));
  }
  const mid = format(0.5 * (lo + hi));
  svg.append(
    el("text", { x: 10, y: 30, "text-anchor": "start" }, format(lo)),
    el("text", { x: 130, y: 30, "text-anchor": "middle" }, mid),
    el("text", { x: 250, y: 30, "text-anchor": "end" }, format(hi)),
  );
  container.replaceChildren(svg);
}

// A histogram of values between lo and hi in `bins` equal bins (of whatever the values are:
// the dashboard passes log10 of conductances or resistances); bars coloured like the heatmap.
export function histogram(container, values, { lo, hi, bins = 40, label, format }) {
  const counts = new Array(bins).fill(0);
  for (const v of values) {
    if (!Number.isFinite(v)) continue;
    const k = Math.min(bins - 1, Math.max(0, Math.floor(((v - lo) / (hi - lo || 1)) * bins)));
    counts[k] += 1;
  }
  const w = 560;
  const h = 200;
  const left = 48;
  const bottom = 34;
  const top = 8;
  const peak = maxOf(counts, 1);
  const bw = (w - left - 8) / bins;
  const svg = el("svg", { class: "histogram", viewBox: `0 0 ${w} ${h}`, role: "img",
    "aria-label": `${label}: ${values.length} devices in ${bins} bins` });
  for (const t of niceTicks(0, peak, 4)) {
    const y = top + (1 - t / peak) * (h - top - bottom);
    svg.append(
      el("line", { x1: left, x2: w - 8, y1: y, y2: y, class: "grid" }),
      el("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, String(t)),
    );
  }
  counts.forEach((n, k) => {
    const bh = (n / peak) * (h - top - bottom);
    svg.append(
      el("rect", { x: left + k * bw + 0.5, y: h - bottom - bh, width: Math.max(0.5, bw - 1),
        height: bh, fill: viridis((k + 0.5) / bins), "data-count": n, class: "bar" }),
    );
  });
  svg.append(
    el("line", { x1: left, x2: w - 8, y1: h - bottom, y2: h - bottom, class: "axis" }),
    el("text", { x: left, y: h - bottom + 16, "text-anchor": "start" }, format(lo)),
    el("text", { x: (left + w - 8) / 2, y: h - bottom + 16, "text-anchor": "middle" },
      format(0.5 * (lo + hi))),
    el("text", { x: w - 8, y: h - bottom + 16, "text-anchor": "end" }, format(hi)),
    el("text", { x: (left + w - 8) / 2, y: h - 2, "text-anchor": "middle" }, label),
  );
  container.replaceChildren(svg);
}
