// The SDXL playground: a form over the server's native job API
// (POST /v1/jobs, Server-Sent Events from /v1/jobs/ID/events), its
// gallery (/v1/images) and A1111's png-info endpoint. No framework, no
// build step, nothing loaded from elsewhere.
'use strict';

const $ = (id) => document.getElementById(id);

// SDXL's sizes (README): about one megapixel, multiples of 8.
const RATIOS = [['1:1', 1024, 1024], ['4:3', 1152, 896], ['3:4', 896, 1152], ['3:2', 1216, 832],
  ['2:3', 832, 1216], ['16:9', 1344, 768], ['9:16', 768, 1344], ['21:9', 1536, 640]];

let info = null;      // GET /v1/info
let current = null;   // id of the job the page follows
let source = null;    // its EventSource
let ratio = '1:1';    // the chosen preset ('' = custom size)
let loras = [];       // [{name, weight}]

async function api(method, path, body) {
  const opt = { method, headers: {} };
  if (body !== undefined) {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body);
  }
  const r = await fetch(path, opt);
  let data = null;
  try { data = await r.json(); } catch (e) { /* not JSON */ }
  if (!r.ok) {
    const err = new Error(detailOf(data) || r.status + ' ' + r.statusText);
    err.status = r.status;
    throw err;
  }
  return data;
}

function detailOf(d) {
  if (!d) return '';
  if (typeof d.detail === 'string') return d.detail;
  if (d.error && d.error.message) return d.error.message;
  return JSON.stringify(d);
}

function showError(msg) { $('error').textContent = msg || ''; }

async function init() {
  try {
    info = await api('GET', '/v1/info');
  } catch (e) {
    if (e.status === 401) { $('login').hidden = false; return; }
    document.body.append('Cannot reach the server: ' + e.message);
    return;
  }
  $('login').hidden = true;
  $('app').hidden = false;
  setup();
}

async function login(ev) {
  ev.preventDefault();
  try {
    await api('POST', '/v1/login', { key: $('key').value });
    init();
  } catch (e) {
    $('login-error').textContent = e.message;
  }
}

function setup() {
  const m = info.base || info.refiner;
  $('model').textContent = m ? (m.title || m.name) + (info.refiner && info.base ? ' + refiner ' + info.refiner.name : '') : '';
  fillSelect($('sampler'), info.samplers, info.defaults.sampler_name);
  fillSelect($('schedule'), info.schedulers, info.defaults.scheduler);
  $('cfg').value = info.defaults.cfg_scale;
  $('steps').max = info.limits.max_steps;
  $('refiner-box').hidden = !(info.refiner && info.base);
  fillSelect($('lora-pick'), info.loras, '');
  $('lora-pick').disabled = $('lora-add').disabled = info.loras.length === 0;
  $('lora-none').hidden = info.lora_dir;
  buildRatios();
  setRatio('1:1');
  bind();
  refreshQueue();
  setInterval(refreshQueue, 1500);
  loadGallery();
}

function fillSelect(sel, values, chosen) {
  sel.replaceChildren(...values.map((v) => new Option(v, v, false, v === chosen)));
}

function buildRatios() {
  $('ratios').replaceChildren(...RATIOS.map(([name]) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = name;
    b.dataset.ratio = name;
    b.setAttribute('role', 'radio');
    b.addEventListener('click', () => setRatio(name));
    return b;
  }));
}

// setRatio picks a preset ('' for a custom size) and sets the size.
function setRatio(name) {
  ratio = name;
  for (const b of $('ratios').children) b.setAttribute('aria-checked', String(b.dataset.ratio === name));
  const r = RATIOS.find((x) => x[0] === name);
  if (!r) return;
  const s = parseFloat($('scale').value);
  $('width').value = Math.max(64, Math.round(r[1] * s / 8) * 8);
  $('height').value = Math.max(64, Math.round(r[2] * s / 8) * 8);
}

function bind() {
  $('form').addEventListener('submit', generate);
  $('cancel').addEventListener('click', cancel);
  $('scale').addEventListener('change', () => setRatio(ratio));
  for (const id of ['width', 'height']) $(id).addEventListener('input', () => setRatio(''));
  $('random-seed').addEventListener('click', () => { $('seed').value = Math.floor(Math.random() * 1e12); });
  $('lora-add').addEventListener('click', () => addLoRA($('lora-pick').value, 1));
  $('png-file').addEventListener('change', (e) => { if (e.target.files[0]) readPNG(e.target.files[0]); });
  $('close-viewer').addEventListener('click', () => $('viewer').close());
  $('prompt').addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) generate(e); });
  bindDrop();
}

// job is the form as a native job.
function job() {
  const j = {
    prompt: $('prompt').value, negative_prompt: $('negative').value,
    width: parseInt($('width').value, 10), height: parseInt($('height').value, 10),
    steps: parseInt($('steps').value, 10), cfg_scale: parseFloat($('cfg').value),
    sampler_name: $('sampler').value, scheduler: $('schedule').value,
    seed: parseInt($('seed').value, 10), n_iter: parseInt($('count').value, 10),
  };
  if (isNaN(j.seed)) j.seed = -1;
  if (!$('refiner-box').hidden) {
    j.refiner = $('refiner').checked;
    if (j.refiner) j.refiner_switch_at = parseFloat($('switch').value);
  }
  if (loras.length) j.loras = loras.map((l) => ({ name: l.name, weight: l.weight }));
  return j;
}

async function generate(ev) {
  ev.preventDefault();
  showError('');
  try {
    const st = await api('POST', '/v1/jobs', job());
    if ($('lock').checked) {
      $('seed').value = st.spec.seed;
    } else {
      $('seed').value = -1;
    }
    follow(st);
    refreshQueue();
  } catch (e) {
    showError(e.message);
  }
}

// follow shows a job's progress and previews until it ends.
function follow(st) {
  if (source) source.close();
  current = st.id;
  $('cancel').disabled = false;
  $('result').hidden = true;
  const pv = $('preview');
  pv.hidden = true;
  pv.width = st.spec.width || 1024;
  pv.height = st.spec.height || 1024;
  showStatus(st);
  source = new EventSource('/v1/jobs/' + st.id + '/events');
  source.addEventListener('status', (e) => showStatus(JSON.parse(e.data)));
  source.addEventListener('preview', (e) => {
    pv.src = JSON.parse(e.data).image;
    pv.hidden = false;
  });
  source.addEventListener('end', (e) => {
    source.close();
    source = null;
    finish(JSON.parse(e.data));
  });
}

function showStatus(st) {
  if (st.id !== current) return;
  $('progress').value = st.progress;
  let text = st.state;
  if (st.state === 'queued') text += ' (position ' + st.queue_position + ')';
  if (st.state === 'running') {
    text = 'batch ' + st.batch + '/' + st.batches + ' · ' + (st.stage || '') + ' ' + (st.step || 0) + '/' + (st.steps || 0);
    if (st.eta_seconds) text += ' · about ' + Math.ceil(st.eta_seconds) + 's left';
  }
  $('status').textContent = text;
}

function finish(st) {
  if (st.id !== current) return;
  current = null;
  $('cancel').disabled = true;
  $('preview').hidden = true;
  const n = (st.images || []).length;
  if (st.state === 'done') $('progress').value = 1;
  $('status').textContent = st.state === 'failed' ? 'Failed.' : st.state === 'cancelled' ? 'Cancelled.' : 'Done.';
  if (st.state === 'failed') showError(st.error);
  if (n > 0) {
    const im = st.images[n - 1];
    const r = $('result');
    r.width = im.width;
    r.height = im.height;
    r.src = im.url;
    r.hidden = false;
    $('result-info').textContent = n + ' image' + (n > 1 ? 's' : '') + ' · seed ' + im.seed + ' · ' + im.width + '×' + im.height;
  }
  loadGallery();
  refreshQueue();
}

async function cancel() {
  if (!current) return;
  try { await api('DELETE', '/v1/jobs/' + current); } catch (e) { if (e.status !== 409) showError(e.message); }
}

async function refreshQueue() {
  let list;
  try { list = (await api('GET', '/v1/jobs')).jobs; } catch (e) { return; }
  const live = list.filter((j) => j.state === 'queued' || j.state === 'running');
  $('queue').replaceChildren(...live.map((j) => {
    const li = document.createElement('li');
    li.dataset.id = j.id;
    li.textContent = j.state + (j.queue_position ? ' #' + j.queue_position : '') + ' · ' + j.spec.prompt.slice(0, 60);
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = '×';
    b.title = 'cancel';
    b.addEventListener('click', () => api('DELETE', '/v1/jobs/' + j.id).catch(() => {}).then(refreshQueue));
    li.append(b);
    return li;
  }));
}

async function loadGallery() {
  let imgs;
  try { imgs = (await api('GET', '/v1/images')).images; } catch (e) { return; }
  $('gallery').replaceChildren(...imgs.map((im) => {
    const t = document.createElement('img');
    t.src = im.url;
    t.loading = 'lazy';
    t.alt = 'seed ' + im.seed;
    t.title = im.width + '×' + im.height + ', seed ' + im.seed;
    t.addEventListener('click', () => openViewer(im));
    return t;
  }));
}

function openViewer(im) {
  $('viewer-img').src = im.url;
  $('viewer-info').textContent = im.infotext;
  const a = $('download');
  a.href = im.url;
  a.download = 'sdxl-' + im.job + '-' + im.index + '.png';
  $('reuse').onclick = () => reuse(im);
  $('viewer').showModal();
}

// reuse fills the form with the settings of a gallery image's job.
async function reuse(im) {
  try {
    const st = await api('GET', '/v1/jobs/' + im.job);
    fillFromSpec(st.spec, im.seed);
    $('viewer').close();
  } catch (e) {
    showError(e.message);
  }
}

function fillFromSpec(s, seed) {
  $('prompt').value = s.prompt || '';
  $('negative').value = s.negative_prompt || '';
  setSize(s.width, s.height);
  $('steps').value = s.steps;
  $('cfg').value = s.cfg_scale;
  setOption($('sampler'), s.sampler_name);
  setOption($('schedule'), s.scheduler);
  $('seed').value = seed;
  $('lock').checked = true;
  $('count').value = 1;
  if (s.refiner !== undefined) $('refiner').checked = s.refiner;
  if (s.refiner_switch_at) $('switch').value = s.refiner_switch_at;
  setLoRAs(s.loras || []);
}

function setOption(sel, v) {
  if ([...sel.options].some((o) => o.value === v)) sel.value = v;
}

function setSize(w, h) {
  if (!w || !h) return;
  $('width').value = w;
  $('height').value = h;
  setRatio('');
}

// fillFromParams fills the form from A1111 parameters (png-info's dict);
// <lora:NAME:W> tags of known LoRAs go to the LoRA list.
function fillFromParams(p) {
  const found = [];
  const prompt = (p.Prompt || '').replace(/<lora:([^:>]+):([^:>]+)[^>]*>/g, (tag, name, w) => {
    if (!info.loras.includes(name)) return tag;
    found.push({ name, weight: parseFloat(w) || 1 });
    return '';
  });
  $('prompt').value = prompt.replace(/\s+$/, '');
  $('negative').value = p['Negative prompt'] || '';
  if (p.Steps) $('steps').value = parseInt(p.Steps, 10);
  if (p['CFG scale']) $('cfg').value = parseFloat(p['CFG scale']);
  if (p.Seed) { $('seed').value = p.Seed; $('lock').checked = true; }
  setSize(parseInt(p['Size-1'], 10), parseInt(p['Size-2'], 10));
  if (p.Sampler) setOption($('sampler'), p.Sampler);
  if (p['Schedule type']) setOption($('schedule'), p['Schedule type']);
  if (!$('refiner-box').hidden) {
    $('refiner').checked = !!p.Refiner;
    if (p['Refiner switch at']) $('switch').value = parseFloat(p['Refiner switch at']);
  }
  setLoRAs(found);
}

async function readPNG(file) {
  showError('');
  const data = await new Promise((ok, fail) => {
    const r = new FileReader();
    r.onload = () => ok(r.result);
    r.onerror = () => fail(r.error);
    r.readAsDataURL(file);
  });
  try {
    const res = await api('POST', '/sdapi/v1/png-info', { image: data });
    if (!res.info) { showError(file.name + ' has no generation parameters'); return; }
    fillFromParams(res.parameters);
    $('status').textContent = 'Settings read from ' + file.name + '.';
  } catch (e) {
    showError(file.name + ': ' + e.message);
  }
}

function bindDrop() {
  const overlay = $('drop');
  let depth = 0;
  window.addEventListener('dragenter', (e) => { e.preventDefault(); depth++; overlay.hidden = false; });
  window.addEventListener('dragleave', () => { if (--depth <= 0) { depth = 0; overlay.hidden = true; } });
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => {
    e.preventDefault();
    depth = 0;
    overlay.hidden = true;
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (f) readPNG(f);
  });
}

function addLoRA(name, weight) {
  if (!name || loras.some((l) => l.name === name)) return;
  loras.push({ name, weight });
  renderLoRAs();
}

function setLoRAs(list) {
  loras = list.filter((l) => info.loras.includes(l.name)).map((l) => ({ name: l.name, weight: l.weight }));
  renderLoRAs();
}

function renderLoRAs() {
  $('loras').replaceChildren(...loras.map((l, i) => {
    const li = document.createElement('li');
    const name = document.createElement('span');
    name.textContent = l.name;
    const w = document.createElement('input');
    w.type = 'number';
    w.step = '0.05';
    w.min = '-10';
    w.max = '10';
    w.value = l.weight;
    w.setAttribute('aria-label', 'strength of ' + l.name);
    w.addEventListener('input', () => { l.weight = parseFloat(w.value) || 0; });
    const rm = document.createElement('button');
    rm.type = 'button';
    rm.textContent = '×';
    rm.title = 'remove';
    rm.addEventListener('click', () => { loras.splice(i, 1); renderLoRAs(); });
    li.append(name, w, rm);
    return li;
  }));
}

$('login').addEventListener('submit', login);
init();
