"use strict";
// cnnlab studio's page. Everything comes from this server's own API; text goes in with
// textContent, never as HTML. Charts are plain SVG drawn here: no library, nothing from a CDN.

const state = {info: null, survey: null, runs: [], run: null, events: null, wrongRow: null};
const COLOURS = ["#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477", "#66aa00"];
const $ = id => document.getElementById(id);

function element(tag, attributes, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function svgElement(tag, attributes) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
  return node;
}

function notice(message) {
  const box = $("notice");
  box.textContent = message;
  box.style.display = message ? "block" : "none";
  if (message) setTimeout(() => { if (box.textContent === message) notice(""); }, 8000);
}

// Every state-changing request carries X-Studio: 1, which no other web site can make a browser send.
async function api(path, options = {}) {
  const settings = {method: options.method || "GET", headers: {}};
  if (settings.method !== "GET") settings.headers["X-Studio"] = "1";
  if (options.json !== undefined) {
    settings.headers["Content-Type"] = "application/json";
    settings.body = JSON.stringify(options.json);
  } else if (options.body !== undefined) settings.body = options.body;
  const response = await fetch(path, settings);
  let body = null;
  try { body = await response.json(); } catch (error) { body = {error: `HTTP ${response.status}`}; }
  if (!response.ok && !options.allowError) throw new Error(body.error || `HTTP ${response.status}`);
  return {status: response.status, body};
}

const number = (value, digits = 3) => (value === null || value === undefined || Number.isNaN(value)) ? "-"
  : (typeof value === "number" ? value.toFixed(digits) : String(value));

function table(headers, rows, numeric = []) {
  const result = element("table");
  const head = element("tr");
  headers.forEach((name, index) => head.append(element("th", numeric.includes(index) ? {class: "number"} : {}, name)));
  result.append(head);
  for (const row of rows) {
    const line = element("tr");
    row.forEach((cell, index) => {
      const td = element("td", numeric.includes(index) ? {class: "number"} : {});
      if (cell instanceof Node) td.append(cell); else td.textContent = cell;
      line.append(td);
    });
    result.append(line);
  }
  return result;
}

// ---- charts ----------------------------------------------------------------------------------

function lineChart(series, {title, width = 460, height = 250}) {
  const svg = svgElement("svg", {class: "chart", width, height, viewBox: `0 0 ${width} ${height}`});
  const left = 48, right = 12, top = 22, bottom = 30;
  const points = series.flatMap(line => line.points).filter(([, y]) => y !== null && Number.isFinite(y));
  svg.append(Object.assign(svgElement("text", {x: left, y: 14}), {textContent: title}));
  if (!points.length) {
    svg.append(Object.assign(svgElement("text", {x: width / 2 - 60, y: height / 2}), {textContent: "no finished epoch yet"}));
    return svg;
  }
  const xMax = Math.max(2, ...points.map(([x]) => x)), xMin = 1;
  let yMin = Math.min(...points.map(([, y]) => y)), yMax = Math.max(...points.map(([, y]) => y));
  if (yMax - yMin < 1e-9) { yMin -= 0.5; yMax += 0.5; }
  const pad = (yMax - yMin) * 0.08; yMin -= pad; yMax += pad;
  const sx = x => left + (x - xMin) / (xMax - xMin) * (width - left - right);
  const sy = y => top + (yMax - y) / (yMax - yMin) * (height - top - bottom);
  svg.append(svgElement("line", {x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, stroke: "#999"}));
  svg.append(svgElement("line", {x1: left, y1: top, x2: left, y2: height - bottom, stroke: "#999"}));
  for (let index = 0; index <= 4; index++) {
    const value = yMin + (yMax - yMin) * index / 4;
    svg.append(svgElement("line", {x1: left, x2: width - right, y1: sy(value), y2: sy(value), stroke: "#eee"}));
    svg.append(Object.assign(svgElement("text", {x: 4, y: sy(value) + 4}), {textContent: value.toFixed(3)}));
  }
  const step = Math.max(1, Math.ceil((xMax - xMin) / 10));
  for (let x = xMin; x <= xMax; x += step)
    svg.append(Object.assign(svgElement("text", {x: sx(x) - 3, y: height - bottom + 14}), {textContent: String(x)}));
  svg.append(Object.assign(svgElement("text", {x: width / 2 - 14, y: height - 4}), {textContent: "epoch"}));
  series.forEach(line => {
    const drawn = line.points.filter(([, y]) => y !== null && Number.isFinite(y));
    if (!drawn.length) return;
    svg.append(svgElement("polyline", {fill: "none", stroke: line.colour, "stroke-width": 2,
      "stroke-dasharray": line.dashed ? "5 4" : "", points: drawn.map(([x, y]) => `${sx(x)},${sy(y)}`).join(" ")}));
    for (const [x, y] of drawn) svg.append(svgElement("circle", {cx: sx(x), cy: sy(y), r: 3, fill: line.colour}));
  });
  const box = element("div");
  const legend = element("div", {class: "legend"});
  for (const line of series) {
    const key = element("span", line.dashed ? {class: "dashed"} : {}, line.name);
    key.style.setProperty("--swatch", line.colour);
    legend.append(key);
  }
  box.append(svg, legend);
  return box;
}

function curveSeries(history, key, label, colour) {
  return [{name: `train ${label}`, colour, dashed: true, points: history.map(entry => [entry.epoch, entry[`train_${key}`]])},
          {name: `validation ${label}`, colour, points: history.map(entry => [entry.epoch, entry[`val_${key}`]])}];
}

function drawCurves(run) {
  const history = (run && run.history) || [];
  $("curve-run").textContent = run ? `${run.name}${run.model ? " (" + run.model + ")" : ""}` : "";
  $("curve-loss").replaceChildren(lineChart(curveSeries(history, "loss", "loss", COLOURS[0]), {title: "loss"}));
  $("curve-accuracy").replaceChildren(lineChart(curveSeries(history, "accuracy", "accuracy", COLOURS[3]), {title: "accuracy"}));
  // What the tests read: the epochs drawn now, and every count drawn so far (the curve growing).
  const chart = $("curve-loss");
  const name = run ? run.name : "";
  const seen = chart.dataset.run === name ? (chart.dataset.seen || "").split(",").filter(Boolean) : [];
  chart.dataset.points = String(history.length);
  chart.dataset.run = name;
  if (seen[seen.length - 1] !== String(history.length)) seen.push(String(history.length));
  chart.dataset.seen = seen.join(",");
}

// ---- tabs ------------------------------------------------------------------------------------

function showTab(name) {
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.tab === name);
  for (const section of document.querySelectorAll("section.tab")) section.classList.toggle("active", section.id === `tab-${name}`);
  if (name === "compare") loadCompareChoices();
  if (name === "inspect") loadInspect();
  if (name === "use") loadUse();
}

// ---- data --------------------------------------------------------------------------------------

function barList(counts) {
  const box = element("div", {class: "bars"});
  const largest = Math.max(1, ...Object.values(counts));
  for (const [name, count] of Object.entries(counts)) {
    const track = element("div", {class: "track"});
    const fill = element("div", {class: "fill"});
    fill.style.width = (100 * count / largest).toFixed(1) + "%";
    track.append(fill);
    box.append(element("span", {}, name), track, element("span", {class: "number"}, String(count)));
  }
  return box;
}

async function loadData() {
  if (!state.info.data) {
    $("data-summary").textContent = "No photo folder: start the studio with --data PHOTOS to survey and train.";
    return;
  }
  const {body} = await api("/api/data/survey");
  state.survey = body;
  $("data-summary").textContent = `${body.root}: ${body.images} photos in ${Object.keys(body.per_class).length} classes `
    + `(${body.layout} layout, ${body.total_megabytes} MB); formats ${Object.entries(body.formats).map(([k, v]) => `${k} ${v}`).join(", ")}`;
  $("data-classes").replaceChildren(barList(body.per_class));
  const shapes = element("div");
  for (const axis of ["width", "height"]) {
    shapes.append(element("div", {class: "note"}, axis));
    shapes.append(barList(Object.fromEntries(body.histogram[axis].map(bin => [`${bin.low}-${bin.high}`, bin.count]))));
  }
  shapes.append(element("p", {class: "note"}, "most common: " + body.top_shapes.slice(0, 5)
    .map(shape => `${shape.width}x${shape.height} (${shape.count})`).join(", ")));
  $("data-shapes").replaceChildren(shapes);
  const samples = element("div");
  const photoChoice = $("explore-photo");
  photoChoice.replaceChildren();
  for (const [label, paths] of Object.entries(body.samples)) {
    samples.append(element("div", {}, `${label} (${body.per_class[label]})`));
    const strip = element("div", {class: "samples", "data-class": label});
    for (const path of paths) {
      const image = element("img", {alt: path, title: path, loading: "lazy",
        src: "/api/data/thumbnail?path=" + encodeURIComponent(path)});
      image.addEventListener("click", () => { photoChoice.value = path; showTab("inspect"); explore(); });
      strip.append(image);
      photoChoice.append(element("option", {value: path}, path));
    }
    samples.append(strip);
  }
  $("data-samples").replaceChildren(samples);
  const skipped = body.unreadable;
  $("data-skipped").replaceChildren(skipped.length ? table(["file", "reason"], skipped.map(item => [item.path, item.reason]))
    : element("span", {class: "note"}, "none: every file is a readable photo"));
  await loadSplit();
}

function splitParameters() {
  const parameters = new URLSearchParams();
  for (const name of ["val", "test", "seed"]) if ($(`split-${name}`).value !== "") parameters.set(name, $(`split-${name}`).value);
  return parameters;
}

async function loadSplit() {
  const {body} = await api("/api/data/split?" + splitParameters());
  const rows = Object.entries(body.per_class).map(([label, counts]) => [label, counts.train, counts.val, counts.test]);
  $("data-split").replaceChildren(table(["class", "train", "validation", "test"], rows, [1, 2, 3]),
    element("p", {class: "note"}, `cnnlab prepare ${body.flags}`));
}

// ---- train -------------------------------------------------------------------------------------

function fillModels() {
  const select = $("train-model");
  for (const family of ["tutorial", "modern"]) {
    const group = element("optgroup", {label: family});
    for (const model of state.info.models.filter(model => model.family === family))
      group.append(element("option", {value: model.name}, `${model.name} (${(model.parameters / 1e6).toFixed(2)} M)`));
    select.append(group);
  }
  select.addEventListener("change", modelDefaults);
  modelDefaults();
}

function modelDefaults() {
  const model = state.info.models.find(model => model.name === $("train-model").value);
  const recipe = model.recipe;
  $("train-epochs").placeholder = recipe.epochs;
  $("train-batch").placeholder = recipe.batch_size;
  $("train-lr").placeholder = recipe.learning_rate;
  $("train-width").placeholder = recipe.input_width;
  $("train-height").placeholder = recipe.input_height;
  $("train-model-note").textContent = model.description;
  const pretrained = model.name.includes("transfer");
  $("train-init-field").style.display = pretrained ? "" : "none";
  const init = $("train-init");
  init.replaceChildren(element("option", {value: ""}, "random"));
  if (pretrained && state.info.imagenet_weights) init.append(element("option", {value: "imagenet"}, "ImageNet (installed)"));
}

async function startTraining(event) {
  event.preventDefault();
  const value = (id, parse) => $(id).value === "" ? null : parse($(id).value);
  const request = {model: $("train-model").value, run: value("train-run", String), epochs: value("train-epochs", Number),
    batch_size: value("train-batch", Number), learning_rate: value("train-lr", Number), width: value("train-width", Number),
    height: value("train-height", Number), patience: value("train-patience", Number), init_weights: value("train-init", String),
    val: value("split-val", Number), test: value("split-test", Number), seed: value("split-seed", Number)};
  try {
    const {body} = await api("/api/train", {method: "POST", json: request});
    $("train-run").value = "";
    watchRun(body.run);
  } catch (error) { notice(error.message); }
}

function jobProgress(job) {
  if (job.status !== "running") return element("span", {class: `status-${job.status}`}, job.status);
  const box = element("span");
  const fraction = job.epochs ? ((job.epoch - 1) + (job.steps ? job.step / job.steps : 0)) / job.epochs : 0;
  const bar = element("span", {class: "progress"});
  const fill = element("div");
  fill.style.width = (100 * Math.max(0, fraction)).toFixed(1) + "%";
  bar.append(fill);
  const words = job.phase === "training" && job.epochs ? ` ${job.phase}: epoch ${job.epoch}/${job.epochs}, step ${job.step}/${job.steps}`
    + (job.loss !== null ? `, loss ${job.loss.toFixed(4)}` : "") : ` ${job.phase}`;
  box.append(element("span", {class: "status-running"}, "running "), bar, element("span", {}, words));
  return box;
}

function jobButton(label, handler) {
  const button = element("button", {class: "action secondary", type: "button"}, label);
  button.addEventListener("click", handler);
  return button;
}

function showJobs(jobs) {
  const running = jobs.find(job => job.status === "running");
  $("job-line").textContent = running ? `${running.kind} ${running.run}: ${running.phase}`
    + (running.epochs ? ` ${running.epoch}/${running.epochs}` : "") : `${jobs.filter(job => job.status === "queued").length} queued, none running`;
  if (!jobs.length) return;
  const rows = jobs.map(job => {
    const actions = element("span");
    if (job.status === "running" || job.status === "queued")
      actions.append(jobButton("Stop", () => api(`/api/jobs/${job.id}/stop`, {method: "POST"}).catch(error => notice(error.message))));
    actions.append(jobButton("Watch", () => watchRun(job.run)));
    return [String(job.id), `${job.kind}${job.resume ? " (resume)" : ""}`, job.run, jobProgress(job), job.message || "", actions];
  });
  const box = $("jobs");
  box.replaceChildren(table(["#", "job", "run", "status", "message", ""], rows));
  for (const job of jobs) box.dataset[`job${job.id}`] = job.status;
  const watched = jobs.find(job => job.run === state.run && job.status === "running");
  $("curve-progress").textContent = watched ? jobProgress(watched).textContent : "";
}

// One event stream for the page's lifetime: the queue and the curves of the runs it trains.
// A run that is not training is read once when chosen; EventSource reconnects by itself.
function listen() {
  const events = new EventSource("/api/events");
  let finished = null;
  events.onmessage = message => {
    const snapshot = JSON.parse(message.data);
    showJobs(snapshot.jobs);
    if (state.run && snapshot.runs[state.run]) drawCurves(snapshot.runs[state.run]);
    // A job that just ended changes the run list (epochs, evaluation): read it again.
    const ended = snapshot.jobs.filter(job => !["queued", "running"].includes(job.status)).map(job => job.id).join(",");
    if (finished !== null && ended !== finished) loadRuns().catch(error => notice(error.message));
    finished = ended;
  };
}

async function watchRun(name) {
  state.run = name;
  const queued = !state.runs.some(run => run.name === name);
  if (queued) { drawCurves({name, history: []}); return; }  // the stream draws it once it trains
  try { drawCurves((await api(`/api/runs/${encodeURIComponent(name)}`)).body); } catch (error) { notice(error.message); }
}

async function loadRuns() {
  const {body} = await api("/api/runs");
  state.runs = body.runs;
  $("runs-folder").textContent = state.info.runs;
  const rows = body.runs.map(run => {
    if (run.error) return [run.name, "-", "-", "-", element("span", {class: "error"}, run.error), ""];
    const actions = element("span");
    actions.append(jobButton("Curves", () => watchRun(run.name)));
    if (!run.complete) actions.append(jobButton("Resume", () => api(`/api/runs/${encodeURIComponent(run.name)}/resume`,
      {method: "POST", json: {}}).then(() => watchRun(run.name)).catch(error => notice(error.message))));
    if (run.has_weights && !run.evaluated) actions.append(jobButton("Evaluate", () => api(`/api/runs/${encodeURIComponent(run.name)}/evaluate`,
      {method: "POST"}).then(() => watchRun(run.name)).catch(error => notice(error.message))));
    return [run.name, run.model, `${run.epochs_done}/${run.epochs}`, number(run.val_accuracy), number(run.val_auc), actions];
  });
  $("runs").replaceChildren(rows.length ? table(["run", "model", "epochs", "val accuracy", "val AUC", ""], rows, [2, 3, 4])
    : element("span", {class: "note"}, "no runs yet"));
  for (const select of document.querySelectorAll(".run-select")) {
    const chosen = select.value;
    select.replaceChildren(...body.runs.filter(run => !run.error && run.has_weights).map(run => element("option", {value: run.name}, run.name)));
    if (chosen && [...select.options].some(option => option.value === chosen)) select.value = chosen;
  }
}

// ---- compare ------------------------------------------------------------------------------------

function loadCompareChoices() {
  const box = $("compare-choices");
  box.replaceChildren(...state.runs.filter(run => !run.error).map(run => {
    const label = element("label", {style: "margin-right: 1rem"});
    label.append(element("input", {type: "checkbox", value: run.name, checked: ""}), ` ${run.name}`);
    return label;
  }));
}

async function compare() {
  const names = [...$("compare-choices").querySelectorAll("input:checked")].map(input => input.value);
  try {
    const {body} = await api("/api/compare?runs=" + encodeURIComponent(names.join(",")));
    const rows = body.rows.map(row => [row.name, row.model, (row.parameters || 0).toLocaleString(), row.epochs ?? "-",
      number(row.val_auc), number(row["val_accuracy_at_0.5"]), number(row.test_accuracy_at_validation_threshold)]);
    const box = element("div");
    box.append(table(["run", "model", "parameters", "epochs", "val AUC", "val accuracy@0.5", "test accuracy"], rows, [2, 3, 4, 5, 6]));
    for (const item of body.not_compared) box.append(element("p", {class: "note"}, `${item.run}: ${item.reason}`));
    $("compare-table").replaceChildren(box);
    const series = Object.entries(body.curves).map(([name, history], index) =>
      ({name, colour: COLOURS[index % COLOURS.length], points: history.map(entry => [entry.epoch, entry.val_loss])}));
    $("compare-curves").replaceChildren(lineChart(series, {title: "validation loss", width: 900, height: 300}));
  } catch (error) { notice(error.message); }
}

// ---- inspect --------------------------------------------------------------------------------------

const runPath = (select, rest) => `/api/runs/${encodeURIComponent($(select).value)}/${rest}`;

async function loadInspect() {
  if (!$("inspect-run").value) { $("inspect-note").textContent = "no trained run yet"; return; }
  $("inspect-note").textContent = "";
  try {
    await showThreshold(null);
    const {body} = await api(runPath("inspect-run", "top-losses"));
    const grid = $("wrong");
    grid.replaceChildren();
    if (!body.rows.length) grid.append(element("span", {class: "note"}, "no wrong predictions on validation"));
    for (const row of body.rows) {
      const figure = element("figure", {"data-row": row.row});
      figure.append(element("img", {src: row.image, alt: row.path}),
        element("figcaption", {}, `${row.path}: true ${row.true}, said ${row.predicted} (P ${row.probability.toFixed(2)})`));
      figure.addEventListener("click", () => openWrong(row, figure));
      grid.append(figure);
    }
  } catch (error) { $("inspect-note").textContent = error.message; }
}

async function showThreshold(value) {
  const query = value === null ? "" : `?threshold=${value}`;
  const {body} = await api(runPath("inspect-run", "confusion" + query));
  const slider = $("threshold");
  slider.disabled = body.threshold === null;
  if (value === null && body.threshold !== null) slider.value = body.threshold;
  const matrix = element("table", {class: "confusion"});
  const head = element("tr");
  head.append(element("th", {}, "true \\ predicted"), ...body.classes.map(name => element("th", {}, name)));
  matrix.append(head);
  body.confusion_matrix.forEach((counts, index) => {
    const line = element("tr");
    line.append(element("th", {}, body.classes[index]));
    const total = Math.max(1, counts.reduce((a, b) => a + b, 0));
    counts.forEach((count, column) => {
      const cell = element("td", {}, String(count));
      const shade = count / total;
      cell.style.background = index === column ? `rgba(42,138,58,${0.15 + 0.6 * shade})` : `rgba(176,0,32,${0.1 + 0.6 * shade})`;
      line.append(cell);
    });
    matrix.append(line);
  });
  $("confusion").replaceChildren(matrix, element("p", {class: "note"}, `${body.photos} validation photos`
    + (body.threshold !== null ? `; ${body.classes[1]} when P(${body.classes[1]}) > ${body.threshold.toFixed(2)}` : "")));
  const metrics = element("div", {id: "threshold-values"});
  metrics.append(table(["threshold", "accuracy", `precision (${body.positive_class || "mean"})`, `recall (${body.positive_class || "mean"})`],
    [[number(body.threshold, 2), number(body.accuracy), number(body.precision), number(body.recall)]], [0, 1, 2, 3]));
  if (body.validation_threshold !== null)
    metrics.append(element("p", {class: "note"}, `the run's own threshold, chosen on validation: ${body.validation_threshold.toFixed(3)}`));
  metrics.dataset.threshold = String(body.threshold);
  metrics.dataset.accuracy = String(body.accuracy);
  $("threshold-metrics").replaceChildren(metrics);
}

async function openWrong(row, figure) {
  for (const other of document.querySelectorAll("#wrong figure")) other.classList.toggle("selected", other === figure);
  state.wrongRow = row.row;
  $("cam-caption").textContent = `${row.path}: true ${row.true}`;
  $("cam").replaceChildren(element("span", {class: "note"}, "computing\u2026"));
  try {
    const {body} = await api(runPath("inspect-run", `grad-cam?row=${row.row}`));
    const pictures = [];
    const add = (source, caption) => { const f = element("figure"); f.append(element("img", {src: source, alt: caption, width: 200}), element("figcaption", {}, caption)); pictures.push(f); };
    add(body.model_input, "what the model sees");
    if (body.grad_cam) add(body.grad_cam, `Grad-CAM (${body.layer}): where the evidence for ${body.result.label} is`);
    $("cam").replaceChildren(...pictures, ...(body.note ? [element("p", {class: "note"}, body.note)] : []));
    $("cam").dataset.row = String(row.row);
    await loadFeatures(row.row);
  } catch (error) { $("cam").replaceChildren(element("span", {class: "error"}, error.message)); }
}

async function loadFeatures(row) {
  const {body} = await api(runPath("inspect-run", `features?row=${row}`));
  state.features = body.layers;
  const select = $("feature-layer");
  select.replaceChildren(...body.layers.map((layer, index) => element("option", {value: index},
    `${layer.layer} (${layer.channels} channels, ${layer.size[0]}x${layer.size[1]})`)));
  showFeatureLayer();
}

function showFeatureLayer() {
  const layer = (state.features || [])[Number($("feature-layer").value || 0)];
  if (!layer) { $("features").replaceChildren(element("span", {class: "note"}, "this model has no convolutions")); return; }
  const figure = element("figure", {style: "max-width: 100%"});
  figure.append(element("img", {src: layer.image, alt: layer.layer, style: "max-width: 100%"}),
    element("figcaption", {}, `${layer.layer}: the first ${Math.min(16, layer.channels)} of ${layer.channels} channels, each scaled to its own range`));
  $("features").replaceChildren(figure);
}

function kernelInputs() {
  const box = $("kernel");
  for (let index = 0; index < 9; index++) box.append(element("input", {type: "number", step: "any", value: "0", "aria-label": `kernel ${index}`}));
  const presets = $("explore-preset");
  for (const name of Object.keys(state.info.kernels)) presets.append(element("option", {value: name}, name));
  presets.addEventListener("change", () => setKernel(state.info.kernels[presets.value]));
  setKernel(state.info.kernels[presets.value]);
}

function setKernel(matrix) {
  [...$("kernel").querySelectorAll("input")].forEach((input, index) => { input.value = +matrix[Math.floor(index / 3)][index % 3].toFixed(4); });
}

async function explore() {
  const path = $("explore-photo").value;
  if (!path) { notice("no photo to explore: start the studio with --data"); return; }
  const values = [...$("kernel").querySelectorAll("input")].map(input => Number(input.value));
  const kernel = [values.slice(0, 3), values.slice(3, 6), values.slice(6, 9)];
  try {
    const {body} = await api("/api/data/convolve", {method: "POST", json: {path, kernel}});
    const figures = [["grey", body.grey, path], ["result", body.result, `${body.display}; values ${body.range.map(v => v.toFixed(1)).join(" to ")}`]]
      .map(([name, source, caption]) => { const f = element("figure"); f.append(element("img", {src: source, alt: name}), element("figcaption", {}, caption)); return f; });
    $("explore").replaceChildren(...figures);
  } catch (error) { notice(error.message); }
}

// ---- use --------------------------------------------------------------------------------------------

function loadUse() {
  const name = $("use-run").value;
  const links = {"export-onnx": "export?format=onnx", "export-keras": "export?format=keras", "report-link": "report"};
  for (const [id, rest] of Object.entries(links)) {
    if (name) $(id).href = runPath("use-run", rest); else $(id).removeAttribute("href");
  }
  $("limits").textContent = `Up to ${state.info.limits.max_upload_mb} MB and ${state.info.limits.max_photos} photos per request.`;
}

async function predict(file) {
  const card = element("div", {class: "card", "data-file": file.name});
  const preview = element("img", {alt: file.name});
  preview.src = URL.createObjectURL(file);
  const box = element("div");
  const label = element("div", {class: "label"}, "predicting\u2026");
  box.append(element("div", {}, file.name), label);
  card.append(preview, box);
  $("predictions").prepend(card);
  const form = new FormData();
  form.append("photos", file, file.name);
  const {status, body} = await api(runPath("use-run", "predict"), {method: "POST", body: form, allowError: true});
  const result = body.results ? body.results[0] : null;
  if (!result || result.error) {
    label.textContent = "refused";
    box.append(element("div", {class: "error"}, `${status}: ${result ? result.error : body.error}`));
    card.dataset.state = "error";
    return;
  }
  label.textContent = result.label;
  const bars = element("div", {class: "bars"});
  for (const [name, probability] of Object.entries(result.probabilities)) {
    const track = element("div", {class: "track"});
    const fill = element("div", {class: name === result.label ? "fill chosen" : "fill"});
    fill.style.width = (100 * probability).toFixed(1) + "%";
    track.append(fill);
    bars.append(element("span", {}, name), track, element("span", {class: "number"}, (100 * probability).toFixed(1) + " %"));
  }
  box.append(bars);
  card.dataset.state = "predicted";
}

async function predictAll(files) {
  if (!$("use-run").value) { notice("no trained run to predict with yet"); return; }
  for (const file of files) await predict(file);
}

// ---- start ---------------------------------------------------------------------------------------------

async function start() {
  try {
    state.info = (await api("/api/info")).body;
  } catch (error) { notice("cannot reach the studio: " + error.message); return; }
  for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => showTab(button.dataset.tab));
  fillModels();
  kernelInputs();
  $("train-form").addEventListener("submit", startTraining);
  $("split-show").addEventListener("click", () => loadSplit().catch(error => notice(error.message)));
  $("compare-show").addEventListener("click", compare);
  $("inspect-run").addEventListener("change", loadInspect);
  $("use-run").addEventListener("change", loadUse);
  let pending = null;
  $("threshold").addEventListener("input", () => {
    clearTimeout(pending);
    pending = setTimeout(() => showThreshold(Number($("threshold").value)).catch(error => notice(error.message)), 60);
  });
  $("feature-layer").addEventListener("change", showFeatureLayer);
  $("explore-apply").addEventListener("click", explore);
  const drop = $("drop"), picker = $("picker");
  picker.addEventListener("change", () => { predictAll(Array.from(picker.files)); picker.value = ""; });
  drop.addEventListener("dragover", event => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", event => { event.preventDefault(); drop.classList.remove("over"); predictAll(Array.from(event.dataTransfer.files)); });
  await loadRuns();
  const latest = state.runs.find(run => !run.error);
  if (latest) await watchRun(latest.name); else drawCurves(null);
  listen();
  try { await loadData(); } catch (error) { $("data-summary").textContent = error.message; }
  document.body.dataset.ready = "yes";
}

start();
