// The page: translate the text box through POST /translate, list the n-best hypotheses with their scores and
// draw the chosen one's attention (output tokens x source tokens) as an SVG heatmap. Plain browser JavaScript,
// nothing loaded from elsewhere.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
let info = null;

// A subword token as a reader wants it: SentencePiece's word-start mark dropped.
const shown = (token) => token.replace(/^\u2581/, "") || "\u2581";

function element(name, attributes = {}, text = null, namespace = null) {
  const node = namespace ? document.createElementNS(namespace, name) : document.createElement(name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== null) node.textContent = text;
  return node;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

// {"name": "beam", "beam_size": 5} → "beam (beam_size 5)"; null settings left out
function settings(object, nameKey) {
  if (!object) return "—";
  const rest = Object.entries(object).filter(([key, value]) => key !== nameKey && value !== null);
  const details = rest.map(([key, value]) => `${key} ${value}`).join(", ");
  return details ? `${object[nameKey]} (${details})` : String(object[nameKey]);
}

function describe(model) {
  const layers = model.encoder_layers ?? "?";
  const direction = model.bidirectional ? "bidirectional " : "";
  const attention = (model.attention && model.attention.kind) || "none";
  return `${direction}${model.cell ?? "?"} × ${layers}, attention ${attention}, ${Number(model.parameters).toLocaleString("en")} parameters, ${model.backend} backend`;
}

function renderInfo(model) {
  $("languages").textContent = model.source_lang && model.target_lang ? `${model.source_lang} → ${model.target_lang}` : "";
  $("model-summary").textContent = describe(model);
  const rows = [
    ["languages", `${model.source_lang ?? "?"} → ${model.target_lang ?? "?"}`],
    ["cell", model.cell],
    ["encoder layers", model.encoder_layers],
    ["bidirectional", model.bidirectional],
    ["attention", settings(model.attention, "kind")],
    ["parameters", Number(model.parameters).toLocaleString("en")],
    ["vocabulary", `${model.source_vocab_size} source, ${model.target_vocab_size} target`],
    ["default decoding", settings(model.decoding, "name")],
    ["backend", model.backend],
  ];
  for (const metrics of model.metrics || []) {
    const signatures = metrics.signatures || {};
    for (const name of ["val/bleu", "test/bleu", "val/chrf", "test/chrf"]) {
      if (typeof metrics[name] === "number") {
        rows.push([name, `${metrics[name].toFixed(2)}  (sacreBLEU ${signatures[name.split("/")[1]] ?? "signature unknown"})`]);
      }
    }
  }
  const list = $("info");
  list.replaceChildren();
  for (const [name, value] of rows) {
    list.append(element("dt", {}, name), element("dd", {}, value === undefined || value === null ? "—" : String(value)));
  }
}

function setDecodingChoices(model) {
  const limits = model.limits || {};
  $("beam-size").max = limits.max_beam_size ?? 10;
  $("nbest").max = limits.max_nbest ?? 10;
  const decoding = model.decoding || {};
  if (decoding.name === "beam") {
    $("decoding").value = "beam";
    $("beam-size").value = decoding.beam_size ?? 5;
    $("nbest").value = Math.max(decoding.nbest ?? 1, 1);
  }
  toggleBeam();
}

function toggleBeam() {
  const beam = $("decoding").value === "beam";
  for (const node of document.querySelectorAll(".beam-only")) node.hidden = !beam;
}

function heatmap(sourceTokens, hypothesis) {
  const weights = hypothesis.attention;
  const rows = hypothesis.tokens, columns = sourceTokens;
  const cell = 30, left = 12 + 8 * Math.max(...rows.map((t) => shown(t).length), 4), top = 12 + 7 * Math.max(...columns.map((t) => shown(t).length), 4);
  const svg = element("svg", {
    width: left + cell * columns.length + 10, height: top + cell * rows.length + 10, role: "img",
    "aria-label": "attention weights: output tokens (rows) over source tokens (columns)",
  }, null, SVG);
  columns.forEach((token, j) => {
    const x = left + cell * j + cell / 2, y = top - 6;
    svg.append(element("text", { class: "label source", x, y, transform: `rotate(-60 ${x} ${y})` }, shown(token), SVG));
  });
  rows.forEach((token, i) => {
    svg.append(element("text", { class: "label output", x: left - 6, y: top + cell * i + cell / 2 + 4, "text-anchor": "end" }, shown(token), SVG));
    columns.forEach((source, j) => {
      const weight = weights[i][j];
      const rect = element("rect", {
        class: "cell", x: left + cell * j, y: top + cell * i, width: cell, height: cell,
        fill: `rgba(36, 88, 198, ${Math.max(0, Math.min(1, weight)).toFixed(3)})`, "data-weight": weight.toFixed(4),
      }, null, SVG);
      rect.append(element("title", {}, `${shown(token)} ← ${shown(source)}: ${weight.toFixed(3)}`, SVG));
      svg.append(rect);
    });
  });
  return svg;
}

function choose(translation, index) {
  const items = $("hypotheses").children;
  for (let k = 0; k < items.length; k++) items[k].classList.toggle("chosen", k === index);
  const hypothesis = translation.hypotheses[index];
  const target = $("heatmap");
  target.replaceChildren();
  if (!hypothesis.attention) {
    $("attention-note").textContent = "This model has no attention (it was trained with attention=none).";
    return;
  }
  $("attention-note").textContent = `Hypothesis ${index + 1}: each row is an output token, each column a source token; darker = more attention.`;
  target.append(heatmap(translation.source_tokens, hypothesis));
}

function render(translation) {
  const list = $("hypotheses");
  list.replaceChildren();
  translation.hypotheses.forEach((hypothesis, index) => {
    const item = element("li", { class: "hypothesis" });
    item.append(element("span", { class: "text", lang: info?.target_lang ?? "" }, hypothesis.text),
      element("span", { class: "score", title: "log-probability (length-penalized in beam search)" }, hypothesis.score.toFixed(4)));
    item.addEventListener("click", () => choose(translation, index));
    list.append(item);
  });
  $("results").hidden = false;
  choose(translation, 0);
}

async function translate(event) {
  event.preventDefault();
  $("error").hidden = true;
  const body = { text: $("source").value };
  if ($("decoding").value === "beam") {
    Object.assign(body, { decoding: "beam", beam_size: Number($("beam-size").value), nbest: Number($("nbest").value) });
  } else {
    body.decoding = "greedy";
  }
  if (info && info.has_attention) body.attention = true;
  $("translate").disabled = true;
  $("status").textContent = "translating…";
  const started = performance.now();
  try {
    const response = await fetch("/translate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    let answer;
    try {
      answer = await response.json();
    } catch {
      answer = { error: `the server answered ${response.status} without a message` };
    }
    if (!response.ok) {
      $("results").hidden = true;
      showError(answer.error || `the server answered ${response.status}`);
      $("status").textContent = "";
      return;
    }
    render(answer.translations[0]);
    $("status").textContent = `${Math.round(performance.now() - started)} ms`;
  } catch (error) {
    showError(`cannot reach the server: ${error.message}`);
    $("status").textContent = "";
  } finally {
    $("translate").disabled = false;
  }
}

async function start() {
  $("form").addEventListener("submit", translate);
  $("decoding").addEventListener("change", toggleBeam);
  toggleBeam();
  try {
    const response = await fetch("/info");
    info = await response.json();
    renderInfo(info);
    setDecodingChoices(info);
  } catch (error) {
    showError(`cannot read the model's description from /info: ${error.message}`);
  }
}

start();
