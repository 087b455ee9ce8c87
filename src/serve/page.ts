// The web page served at /: pick or drop an image, type labels, see a bar per label and the attention overlay
// of the selected label. Plain HTML + JS, no build step, no external resources. Its style, markup and view
// (bars, overlay, status) are shared with the in-browser page of src/web/ (export-web, served at /web/), which
// passes its own tagging function; this one posts to /v1/tag.

/** The page's style sheet. */
export const PAGE_STYLE = `  :root { font-family: system-ui, sans-serif; color: #1d1d28; background: #f6f6f9; }
  body { max-width: 980px; margin: 24px auto; padding: 0 16px; }
  h1 { font-size: 1.4rem; margin: 0 0 4px; }
  p.sub { margin: 0 0 16px; color: #555; }
  .row { display: flex; gap: 24px; flex-wrap: wrap; }
  #drop { width: 320px; height: 320px; border: 2px dashed #9a9ab0; border-radius: 10px; display: flex; align-items: center;
          justify-content: center; text-align: center; background: #fff; cursor: pointer; position: relative; overflow: hidden; }
  #drop.over { border-color: #5b4bdb; background: #f0eeff; }
  #drop canvas { position: absolute; inset: 0; width: 100%; height: 100%; }
  #hint { color: #777; padding: 16px; }
  .panel { flex: 1; min-width: 300px; }
  label { font-weight: 600; display: block; margin: 0 0 6px; }
  #labels { width: 100%; box-sizing: border-box; padding: 8px; font-size: 1rem; border: 1px solid #bbb; border-radius: 6px; }
  button { margin-top: 10px; padding: 8px 18px; font-size: 1rem; border: 0; border-radius: 6px; background: #5b4bdb; color: #fff; cursor: pointer; }
  button:disabled { background: #aaa; cursor: default; }
  #status { margin: 10px 0; min-height: 1.2em; color: #555; }
  #status.error { color: #b3261e; }
  .bar { display: grid; grid-template-columns: 140px 1fr 56px; align-items: center; gap: 8px; padding: 4px 6px; border-radius: 6px; cursor: pointer; }
  .bar:hover { background: #ebe9fb; }
  .bar.selected { background: #dcd8ff; }
  .bar[data-pass="true"] .name { font-weight: 600; }
  .bar .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
  .bar .track { display: block; height: 14px; background: #e4e4ec; border-radius: 7px; overflow: hidden; }
  .bar .fill { display: block; height: 100%; background: linear-gradient(90deg, #7e03a8, #f89540); }
  .bar .pct { text-align: right; font-variant-numeric: tabular-nums; }
`;

/** The page's markup (drop zone, labels field, Tag button, status line, bars). */
export function pageBody(subtitle: string): string {
  return `<h1>clip-decoder</h1>
<p class="sub">${subtitle}</p>
<div class="row">
  <div>
    <div id="drop" title="drop an image here or click to pick one">
      <span id="hint">Drop an image here<br>or click to pick one</span>
      <canvas id="view" width="320" height="320" hidden></canvas>
    </div>
    <input id="file" type="file" accept="image/*" hidden>
  </div>
  <div class="panel">
    <label for="labels">Labels (comma-separated)</label>
    <input id="labels" value="dog, cat, pizza, car, tree, sun, music, heart">
    <button id="tag" disabled>Tag</button>
    <div id="status"></div>
    <div id="bars"></div>
  </div>
</div>
`;
}

/**
 * A classic script defining `clipDecoderPage({tag, cannotShow})`: wires the drop zone, the labels field and the
 * button to `tag(file, labelsText)`, which resolves to `{labels: [{label, probability, attention?}], grid, ms}`
 * (the /v1/tag answer) or throws an Error whose message the status line shows. It returns `{setStatus,
 * setReady}`: the button is enabled once an image is chosen and the page is ready.
 */
export const PAGE_VIEW_SCRIPT = `
window.clipDecoderPage = (opts) => {
  const drop = document.getElementById('drop'), fileInput = document.getElementById('file');
  const view = document.getElementById('view'), hint = document.getElementById('hint');
  const labelsInput = document.getElementById('labels'), tagButton = document.getElementById('tag');
  const statusEl = document.getElementById('status'), bars = document.getElementById('bars');
  let file = null, img = null, result = null, selected = null, ready = opts.ready !== false, busy = false;
  const STOPS = [[13, 8, 135], [126, 3, 168], [204, 71, 120], [248, 149, 64], [240, 249, 33]];
  function colour(v) {
    const x = Math.min(1, Math.max(0, v)) * (STOPS.length - 1), i = Math.min(STOPS.length - 2, Math.floor(x)), f = x - i;
    return STOPS[i].map((a, k) => Math.round(a + (STOPS[i + 1][k] - a) * f));
  }
  function setStatus(text, isError) { statusEl.textContent = text; statusEl.className = isError ? 'error' : ''; }
  function updateButton() { tagButton.disabled = !(file && ready) || busy; }
  function draw() {
    if (!img) return;
    const ctx = view.getContext('2d'), S = view.width;
    // The model sees a centred square crop: show the same.
    const side = Math.min(img.naturalWidth, img.naturalHeight);
    ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, S, S);
    ctx.drawImage(img, (img.naturalWidth - side) / 2, (img.naturalHeight - side) / 2, side, side, 0, 0, S, S);
    const item = result && selected !== null ? result.labels.find((l) => l.label === selected) : null;
    if (item && item.attention) {
      const { height: gh, width: gw } = result.grid;
      const small = document.createElement('canvas'); small.width = gw; small.height = gh;
      const sctx = small.getContext('2d'), data = sctx.createImageData(gw, gh);
      const lo = Math.min(...item.attention), hi = Math.max(...item.attention);
      item.attention.forEach((a, i) => {
        const [r, g, b] = colour(hi > lo ? (a - lo) / (hi - lo) : 0);
        data.data.set([r, g, b, 255], i * 4);
      });
      sctx.putImageData(data, 0, 0);
      ctx.globalAlpha = 0.55; ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = 'high';
      ctx.drawImage(small, 0, 0, S, S);
      ctx.globalAlpha = 1;
    }
    view.dataset.overlay = item && item.attention ? item.label : '';
  }
  function load(f) {
    if (!f) return;
    file = f; result = null; selected = null; bars.innerHTML = '';
    img = new Image();
    img.onload = () => { hint.hidden = true; view.hidden = false; draw(); updateButton(); setStatus(''); };
    img.onerror = () => { setStatus(opts.cannotShow, false); updateButton(); };
    img.src = URL.createObjectURL(f);
  }
  function renderBars() {
    bars.innerHTML = '';
    for (const l of result.labels) {
      const row = document.createElement('div');
      row.className = 'bar' + (l.label === selected ? ' selected' : '');
      row.dataset.label = l.label;
      row.dataset.probability = String(l.probability);
      // the calibration's decision threshold (answers carry it): labels at or above it are the predicted tags
      if (typeof result.threshold === 'number') row.dataset.pass = String(l.probability >= result.threshold);
      const pct = (100 * l.probability).toFixed(1);
      row.innerHTML = '<span class="name"></span><span class="track"><span class="fill"></span></span><span class="pct"></span>';
      row.querySelector('.name').textContent = l.label;
      row.querySelector('.fill').style.width = pct + '%';
      row.querySelector('.pct').textContent = pct + '%';
      row.addEventListener('click', () => { selected = l.label; renderBars(); draw(); });
      bars.appendChild(row);
    }
  }
  async function tag() {
    if (!file || !ready || busy) return;
    busy = true; updateButton(); setStatus('tagging…');
    try {
      const body = await opts.tag(file, labelsInput.value);
      result = body; selected = body.labels.length ? body.labels[0].label : null;
      renderBars(); draw();
      const t = typeof body.threshold === 'number' ? body.threshold : null;
      const passed = t === null ? '' : ' (' + body.labels.filter((l) => l.probability >= t).length + ' at or above the calibrated threshold ' + t + ')';
      setStatus(body.labels.length + ' labels in ' + body.ms + ' ms' + passed);
    } catch (e) {
      setStatus(String((e && e.message) || e), true);
    } finally {
      busy = false; updateButton();
    }
  }
  drop.addEventListener('click', () => fileInput.click());
  fileInput.addEventListener('change', () => load(fileInput.files[0]));
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); load(e.dataTransfer.files[0]); });
  tagButton.addEventListener('click', tag);
  labelsInput.addEventListener('keydown', (e) => { if (e.key === 'Enter') tag(); });
  return { setStatus, setReady(v) { ready = v; updateButton(); } };
};
`;

/** A whole page: the shared style, markup and view, then the page's own script. */
export function pageHtml(o: { title: string; subtitle: string; head?: string; script: string }): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${o.title}</title>
<style>
${PAGE_STYLE}</style>
${o.head ?? ''}</head>
<body>
${pageBody(o.subtitle)}<script>
${PAGE_VIEW_SCRIPT}</script>
${o.script}
</body>
</html>
`;
}

export const PAGE_HTML = pageHtml({
  title: 'clip-decoder',
  subtitle:
    'Open-vocabulary multi-label tagging: an independent probability for every label you type. Click a label to see where it looked.',
  script: `<script>
clipDecoderPage({
  cannotShow: 'this browser cannot show that file; the server may still read it',
  async tag(file, labels) {
    const form = new FormData();
    form.append('labels', labels);
    form.append('attention', '1');
    form.append('image', file);
    const res = await fetch('/v1/tag', { method: 'POST', body: form });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error ? body.error.message : res.statusText);
    return body;
  },
});
</script>`,
});
