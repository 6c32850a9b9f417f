// The demo page: reads /api/info (run, encoder, step, limits, example captions), posts the form to
// /api/generate and shows each answer as a card; the last KEEP cards stay on the page, newest first.
"use strict";

const KEEP = 5;
const $ = (id) => document.getElementById(id);
let info = null;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function slug(text) {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 40) || "image";
}

async function loadInfo() {
  try {
    const r = await fetch("/api/info");
    info = await r.json();
  } catch (e) {
    $("run-info").textContent = "cannot reach the server: " + e;
    return;
  }
  $("run-info").textContent =
    `run ${info.run} · dataset ${info.dataset || "?"} · encoder ${info.encoder} (${info.encoder_dim}-d) · ` +
    `checkpoint step ${info.step} · ${info.image_size}×${info.image_size} images`;
  $("n").max = info.limits.max_n;
  const box = $("examples");
  for (const text of info.examples) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "example";
    b.textContent = text;
    b.addEventListener("click", () => { $("caption").value = text; $("caption").focus(); });
    box.appendChild(b);
  }
}

function request() {
  const body = { text: $("caption").value, n: Number($("n").value), seed: Number($("seed").value) };
  const t = $("truncation").value.trim();
  if (t) body.truncation = Number(t);
  return body;
}

function card(body, answer, elapsedMs) {
  const div = document.createElement("article");
  div.className = "result";
  const h = document.createElement("h2");
  h.textContent = answer.texts[0];
  const meta = document.createElement("p");
  meta.className = "meta";
  meta.textContent =
    `${answer.images.length} image${answer.images.length === 1 ? "" : "s"} · seed ${answer.seed}` +
    (answer.truncation ? ` · truncation ${answer.truncation}` : "") +
    ` · encoder ${answer.encoder} · step ${answer.step} · generated in ${answer.ms} ms on the server ` +
    `(${Math.round(elapsedMs)} ms here; batch of ${answer.batch_images})`;
  const images = document.createElement("div");
  images.className = "images";
  answer.images.forEach((b64, k) => {
    const src = "data:image/png;base64," + b64;
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.src = src;
    if (info && info.image_size > 128) {  // 64 px shows at 2x (style.css), 128 px at 1x, 256 px at its own size
      img.style.width = img.style.height = `${info.image_size}px`;
    }
    img.alt = `${answer.texts[0]} (#${k + 1})`;
    const a = document.createElement("a");
    a.href = src;
    a.download = `${slug(answer.texts[0])}-seed${answer.seed}-${k + 1}.png`;
    a.textContent = "PNG";
    fig.append(img, a);
    images.appendChild(fig);
  });
  div.append(h, meta, images);
  return div;
}

async function generate(event) {
  event.preventDefault();
  showError("");
  const body = request();
  const button = $("generate");
  button.disabled = true;
  const t0 = performance.now();
  try {
    const r = await fetch("/api/generate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const answer = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if (!r.ok) {
      showError(answer.error || `HTTP ${r.status}`);
      return;
    }
    const results = $("results");
    for (const old of results.children) old.classList.add("older");
    results.prepend(card(body, answer, performance.now() - t0));
    while (results.children.length > KEEP) results.lastElementChild.remove();
  } catch (e) {
    showError("request failed: " + e);
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  loadInfo();
  $("prompt-form").addEventListener("submit", generate);
  $("random-seed").addEventListener("click", () => { $("seed").value = Math.floor(Math.random() * 1e6); });
});

// Enter sends the caption (Shift+Enter makes a new line)
document.addEventListener("keydown", (e) => {
  if (e.target.id === "caption" && e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("prompt-form").requestSubmit();
  }
});
