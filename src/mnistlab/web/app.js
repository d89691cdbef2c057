// The draw-a-digit page: a canvas, an upload, and one bar chart per model. No library, no CDN.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const statusLine = document.getElementById("status");
let drawing = false;
let last = null;
let inkDrawn = false;
let classNames = [];

function clearPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
  inkDrawn = false;
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width,
          (event.clientY - box.top) * pad.height / box.height];
}

pad.addEventListener("pointerdown", (event) => {
  drawing = true;
  last = point(event);
  pad.setPointerCapture(event.pointerId);
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const now = point(event);
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = 20;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(last[0], last[1]);
  ctx.lineTo(now[0], now[1]);
  ctx.stroke();
  last = now;
  inkDrawn = true;
});
function endStroke() {
  if (!drawing) return;
  drawing = false;
  if (inkDrawn) pad.toBlob((blob) => predict(blob, "image/png"), "image/png");
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

document.getElementById("clear").addEventListener("click", () => {
  clearPad();
  document.getElementById("predictions").textContent = "";
  document.getElementById("summary").textContent = "";
  document.getElementById("far").textContent = "";
  statusLine.textContent = "";
});

document.getElementById("file").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) predict(file, file.type || "application/octet-stream");
});

async function predict(body, type) {
  statusLine.textContent = "Predicting…";
  statusLine.className = "";
  try {
    const response = await fetch("/api/predict", {
      method: "POST", headers: {"Content-Type": type}, body});
    const answer = await response.json();
    if (!response.ok) throw new Error(answer.detail || response.statusText);
    show(answer);
    statusLine.textContent = "";
  } catch (error) {
    statusLine.textContent = "Error: " + error.message;
    statusLine.className = "error";
  }
}

function showSeen(image) {
  const seen = document.getElementById("seen");
  const h = image.length, w = image[0].length;
  const small = document.createElement("canvas");
  small.width = w;
  small.height = h;
  const pixels = small.getContext("2d").createImageData(w, h);
  image.flat().forEach((v, i) => {
    pixels.data.set([v, v, v, 255], 4 * i);
  });
  small.getContext("2d").putImageData(pixels, 0, 0);
  const big = seen.getContext("2d");
  big.imageSmoothingEnabled = false;
  big.drawImage(small, 0, 0, seen.width, seen.height);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function show(answer) {
  showSeen(answer.input);
  const summary = document.getElementById("summary");
  const votes = Object.entries(answer.votes).sort((a, b) => b[1] - a[1]);
  summary.textContent = answer.agree
    ? `Every model says ${votes[0][0]}.`
    : "The models disagree: " + votes.map(([name, n]) => `${name} (${n})`).join(", ") + ".";
  summary.className = answer.agree ? "" : "warning";
  const far = document.getElementById("far");
  const f = answer.familiarity;
  far.textContent = f && f.far
    ? `This image is far from the training images (distance ${f.distance.toFixed(2)}, ` +
      `above ${f.threshold.toFixed(2)}): the predictions below may mean little.`
    : "";
  far.className = f && f.far ? "warning" : "";
  const list = document.getElementById("predictions");
  list.textContent = "";
  for (const p of answer.predictions) {
    const block = element("div", "model");
    block.dataset.model = p.model;
    const title = element("h3", "", `${p.model}: ${p.name}`);
    if (p.unsure) title.append(element("span", "unsure", ` (unsure: top probability ${p.top.toFixed(2)})`));
    if (p.kind === "score") title.append(element("span", "", " (decision scores, not probabilities)"));
    block.append(title);
    const bars = element("div", "bars");
    const low = Math.min(...p.values), high = Math.max(...p.values);
    p.values.forEach((v, k) => {
      const share = p.kind === "probability" ? v : (high > low ? (v - low) / (high - low) : 0);
      bars.append(element("span", "", classNames[k] ?? String(k)));
      const bar = element("div", k === p.class ? "bar top" : "bar");
      bar.style.width = `${Math.max(0, Math.min(1, share)) * 100}%`;
      bars.append(bar);
      bars.append(element("span", "", p.kind === "probability" ? v.toFixed(3) : v.toFixed(2)));
    });
    block.append(bars);
    list.append(block);
  }
}

async function start() {
  clearPad();
  try {
    const response = await fetch("/api/models");
    const info = await response.json();
    classNames = info.class_names;
    document.getElementById("study").textContent =
      `${info.models.length} models of the ${info.dataset} study ` +
      `(images ${info.image_shape.join("x")}; best on validation: ${info.best}).`;
  } catch (error) {
    statusLine.textContent = "Error: cannot list the models (" + error.message + ")";
    statusLine.className = "error";
  }
}
start();
