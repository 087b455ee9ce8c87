// Evaluation plots as hand-written SVG (no plotting dependency): precision-recall curves and a histogram.

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const fmt = (v: number) => (Math.round(v * 100) / 100).toString();

interface Frame {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** Axes with ticks in [0, 1] on both sides (or [0, yMax] on y), labels and a title. */
function axes(f: Frame, title: string, xLabel: string, yLabel: string, yMax = 1, yTicks = 5): string {
  const parts: string[] = [];
  parts.push(`<rect x="${f.x}" y="${f.y}" width="${f.w}" height="${f.h}" fill="white" stroke="#333"/>`);
  for (let i = 0; i <= 5; i++) {
    const x = f.x + (f.w * i) / 5;
    parts.push(`<line x1="${fmt(x)}" y1="${f.y + f.h}" x2="${fmt(x)}" y2="${f.y + f.h + 4}" stroke="#333"/>`);
    parts.push(`<text x="${fmt(x)}" y="${f.y + f.h + 16}" text-anchor="middle" font-size="11">${fmt(i / 5)}</text>`);
    if (i > 0 && i < 5) parts.push(`<line x1="${fmt(x)}" y1="${f.y}" x2="${fmt(x)}" y2="${f.y + f.h}" stroke="#eee"/>`);
  }
  for (let i = 0; i <= yTicks; i++) {
    const y = f.y + f.h - (f.h * i) / yTicks;
    parts.push(`<line x1="${f.x - 4}" y1="${fmt(y)}" x2="${f.x}" y2="${fmt(y)}" stroke="#333"/>`);
    parts.push(`<text x="${f.x - 7}" y="${fmt(y + 4)}" text-anchor="end" font-size="11">${fmt((yMax * i) / yTicks)}</text>`);
    if (i > 0 && i < yTicks) parts.push(`<line x1="${f.x}" y1="${fmt(y)}" x2="${f.x + f.w}" y2="${fmt(y)}" stroke="#eee"/>`);
  }
  parts.push(
    `<text x="${fmt(f.x + f.w / 2)}" y="${f.y - 10}" text-anchor="middle" font-size="13" font-weight="bold">${escapeXml(title)}</text>`,
  );
  parts.push(`<text x="${fmt(f.x + f.w / 2)}" y="${f.y + f.h + 34}" text-anchor="middle" font-size="12">${escapeXml(xLabel)}</text>`);
  parts.push(
    `<text x="${f.x - 40}" y="${fmt(f.y + f.h / 2)}" text-anchor="middle" font-size="12" transform="rotate(-90 ${f.x - 40} ${fmt(f.y + f.h / 2)})">${escapeXml(yLabel)}</text>`,
  );
  return parts.join('\n');
}

export interface Curve {
  name: string;
  /** Points after each positive in the ranking. */
  precision: readonly number[];
  recall: readonly number[];
}

/** One panel of PR curves drawn as steps from (0, p1), with a legend. */
function prPanel(f: Frame, title: string, curves: readonly Curve[]): string {
  const parts = [axes(f, title, 'recall', 'precision')];
  const px = (r: number) => fmt(f.x + r * f.w);
  const py = (p: number) => fmt(f.y + f.h - p * f.h);
  curves.forEach((c, k) => {
    const color = COLORS[k % COLORS.length]!;
    const pts: string[] = [];
    let prevR = 0;
    for (let i = 0; i < c.precision.length; i++) {
      pts.push(`${px(prevR)},${py(c.precision[i]!)}`, `${px(c.recall[i]!)},${py(c.precision[i]!)}`);
      prevR = c.recall[i]!;
    }
    if (pts.length > 0) parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.8" points="${pts.join(' ')}"/>`);
    const ly = f.y + 14 + k * 16;
    parts.push(
      `<line x1="${f.x + f.w - 150}" y1="${ly - 4}" x2="${f.x + f.w - 132}" y2="${ly - 4}" stroke="${color}" stroke-width="2.5"/>`,
    );
    parts.push(`<text x="${f.x + f.w - 127}" y="${ly}" font-size="11">${escapeXml(c.name)}</text>`);
  });
  return parts.join('\n');
}

/** Two panels side by side: the best and the worst labels' precision-recall curves. */
export function prCurvesSvg(best: readonly Curve[], worst: readonly Curve[], what: string): string {
  const W = 900;
  const H = 400;
  const left: Frame = { x: 70, y: 40, w: 360, h: 300 };
  const right: Frame = { x: 520, y: 40, w: 360, h: 300 };
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    prPanel(left, `Best ${what} (highest AP)`, best),
    prPanel(right, `Worst ${what} (lowest AP)`, worst),
    '</svg>',
    '',
  ].join('\n');
}

export interface HistogramSeries {
  name: string;
  values: readonly number[]; // in [0, 1]
}

/** A histogram of values in [0, 1] in `bins` bins, series stacked. */
export function histogramSvg(series: readonly HistogramSeries[], title: string, xLabel: string, bins = 10): string {
  const W = 560;
  const H = 400;
  const f: Frame = { x: 70, y: 40, w: 460, h: 300 };
  const counts = series.map((s) => {
    const c = new Array<number>(bins).fill(0);
    for (const v of s.values) c[Math.min(bins - 1, Math.max(0, Math.floor(v * bins)))]! += 1;
    return c;
  });
  const totals = Array.from({ length: bins }, (_, b) => counts.reduce((a, c) => a + c[b]!, 0));
  // A round tick step (1, 2 or 5 × 10^k) giving at most 6 ticks.
  const top = Math.max(1, ...totals);
  const mag = 10 ** Math.floor(Math.log10(top / 5));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((st) => top / st <= 6) ?? 10 * mag;
  const ticks = Math.max(1, Math.ceil(top / step));
  const yMax = ticks * step;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    axes(f, title, xLabel, 'labels', yMax, ticks),
  ];
  const bw = f.w / bins;
  for (let b = 0; b < bins; b++) {
    let base = 0;
    counts.forEach((c, k) => {
      if (c[b] === 0) return;
      const h = (c[b]! / yMax) * f.h;
      const y = f.y + f.h - ((base + c[b]!) / yMax) * f.h;
      parts.push(
        `<rect x="${fmt(f.x + b * bw + 1)}" y="${fmt(y)}" width="${fmt(bw - 2)}" height="${fmt(h)}" fill="${COLORS[k % COLORS.length]}"><title>${escapeXml(series[k]!.name)}: ${c[b]}</title></rect>`,
      );
      base += c[b]!;
    });
  }
  series.forEach((s, k) => {
    const ly = f.y + 14 + k * 16;
    parts.push(`<rect x="${f.x + f.w - 120}" y="${ly - 10}" width="12" height="12" fill="${COLORS[k % COLORS.length]}"/>`);
    parts.push(`<text x="${f.x + f.w - 103}" y="${ly}" font-size="11">${escapeXml(s.name)} (${s.values.length})</text>`);
  });
  parts.push('</svg>', '');
  return parts.join('\n');
}

export interface LineSeries {
  name: string;
  points: readonly (readonly [number, number])[];
}

/** Panels of line charts side by side sharing an x axis label (training curves). Axes fit the data. */
export function lineChartSvg(panels: readonly { title: string; series: readonly LineSeries[] }[], xLabel: string): string {
  const PW = 420,
    PH = 280,
    W = 40 + panels.length * (PW + 80),
    H = 380;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
  ];
  panels.forEach((panel, p) => {
    const f: Frame = { x: 80 + p * (PW + 80), y: 40, w: PW, h: PH };
    const all = panel.series.flatMap((s) => s.points);
    const xs = all.map((q) => q[0]),
      ys = all.map((q) => q[1]);
    const x0 = Math.min(...xs, 0),
      x1 = Math.max(...xs, 1);
    const y0 = Math.min(0, ...ys),
      y1 = Math.max(...ys, 1e-9) * 1.05;
    const px = (x: number) => fmt(f.x + ((x - x0) / (x1 - x0 || 1)) * f.w);
    const py = (y: number) => fmt(f.y + f.h - ((y - y0) / (y1 - y0 || 1)) * f.h);
    parts.push(`<rect x="${f.x}" y="${f.y}" width="${f.w}" height="${f.h}" fill="white" stroke="#333"/>`);
    for (let i = 0; i <= 5; i++) {
      const xv = x0 + ((x1 - x0) * i) / 5,
        yv = y0 + ((y1 - y0) * i) / 5;
      parts.push(`<text x="${px(xv)}" y="${f.y + f.h + 16}" text-anchor="middle" font-size="11">${fmt(xv)}</text>`);
      parts.push(`<text x="${f.x - 7}" y="${Number(py(yv)) + 4}" text-anchor="end" font-size="11">${fmt(yv)}</text>`);
      if (i > 0 && i < 5) parts.push(`<line x1="${f.x}" y1="${py(yv)}" x2="${f.x + f.w}" y2="${py(yv)}" stroke="#eee"/>`);
    }
    parts.push(
      `<text x="${fmt(f.x + f.w / 2)}" y="${f.y - 12}" text-anchor="middle" font-size="13" font-weight="bold">${escapeXml(panel.title)}</text>`,
    );
    parts.push(`<text x="${fmt(f.x + f.w / 2)}" y="${f.y + f.h + 36}" text-anchor="middle" font-size="12">${escapeXml(xLabel)}</text>`);
    panel.series.forEach((s, k) => {
      const color = COLORS[k % COLORS.length]!;
      if (s.points.length > 0)
        parts.push(
          `<polyline fill="none" stroke="${color}" stroke-width="1.8" points="${s.points.map((q) => `${px(q[0])},${py(q[1])}`).join(' ')}"/>`,
        );
      for (const q of s.points.length <= 60 ? s.points : [])
        parts.push(`<circle cx="${px(q[0])}" cy="${py(q[1])}" r="2.2" fill="${color}"/>`);
      const ly = f.y + 16 + k * 16;
      parts.push(
        `<line x1="${f.x + f.w - 170}" y1="${ly - 4}" x2="${f.x + f.w - 152}" y2="${ly - 4}" stroke="${color}" stroke-width="2.5"/>`,
      );
      parts.push(`<text x="${f.x + f.w - 147}" y="${ly}" font-size="11">${escapeXml(s.name)}</text>`);
    });
  });
  parts.push('</svg>', '');
  return parts.join('\n');
}

export interface ReliabilitySeries {
  name: string;
  /** Per non-empty bin: mean predicted probability, observed fraction of positives. */
  points: readonly (readonly [number, number])[];
}

/** A reliability diagram: observed frequency against predicted probability, the diagonal being perfect calibration. */
export function reliabilitySvg(series: readonly ReliabilitySeries[], title: string): string {
  const W = 560;
  const H = 420;
  const f: Frame = { x: 70, y: 40, w: 440, h: 320 };
  const px = (x: number) => fmt(f.x + x * f.w);
  const py = (y: number) => fmt(f.y + f.h - y * f.h);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    axes(f, title, 'predicted probability', 'fraction positive'),
    `<line x1="${px(0)}" y1="${py(0)}" x2="${px(1)}" y2="${py(1)}" stroke="#999" stroke-dasharray="4 3"/>`,
  ];
  series.forEach((s, k) => {
    const color = COLORS[k % COLORS.length]!;
    parts.push(
      `<polyline fill="none" stroke="${color}" stroke-width="1.8" points="${s.points.map((q) => `${px(q[0])},${py(q[1])}`).join(' ')}"/>`,
    );
    for (const q of s.points) parts.push(`<circle cx="${px(q[0])}" cy="${py(q[1])}" r="2.5" fill="${color}"/>`);
    const ly = f.y + 16 + k * 16;
    parts.push(`<rect x="${f.x + 10}" y="${ly - 10}" width="12" height="12" fill="${color}"/>`);
    parts.push(`<text x="${f.x + 27}" y="${ly}" font-size="11">${escapeXml(s.name)}</text>`);
  });
  parts.push('</svg>', '');
  return parts.join('\n');
}
