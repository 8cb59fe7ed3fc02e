// The explorer page: one query image, every available panel answers it; a browse view of the collection.
// A panel is one module of panels/ (see panels/index.js for its contract).

import { api, apiUrl, ApiError, postImage } from "./api.js";
import { h, ms } from "./dom.js";
import { PANELS } from "./panels/index.js";

const $ = (id) => document.getElementById(id);
const state = { health: null, cards: [], page: 1, pages: 1 };

// ------------------------------------------------------------------------------------------- panels
function buildPanels(health) {
  const off = [];
  for (const panel of PANELS) {
    if (!health.panels[panel.name]) {
      const info = health.models[panel.name];
      if (info) off.push(`${panel.title}: off (${info.reason || "no model"})`);
      continue;
    }
    const model = health.models[panel.name]?.name || "";
    const time = h("span", { class: "time", "data-testid": "time" });
    const hint = panel.hint ?? (panel.run ? "waiting for an image" : "");
    const body = h("div", { class: "panel-body" }, hint ? h("p", { class: "hint" }, hint) : "");
    const entry = { panel, body, time, card: null, run: 0 };
    // ctx.show(fn): run fn() → result now and show it in this card, as a query would (state, time, error)
    entry.ctx = { api, apiUrl, postImage, query, show: (fn) => show(entry, fn) };
    const controls = panel.init ? panel.init(body, entry.ctx) : null;
    entry.card = h(
      "section",
      { class: "card panel", id: `panel-${panel.name}`, "data-testid": `panel-${panel.name}`, "data-state": "idle" },
      h("h2", {}, panel.title, h("span", { class: "model" }, model), time),
      controls,
      body,
    );
    $("panels").append(entry.card);
    state.cards.push(entry);
  }
  $("off").textContent = off.join(" · ");
}

// One card's answer: `fn()` → result, rendered with its time, or the server's one-line error. Only the latest
// answer of a card is shown (a newer query or a panel's own request takes over).
async function show(entry, fn) {
  const { panel, card, body, time } = entry;
  const run = ++entry.run;
  card.dataset.state = "running";
  time.textContent = "working…";
  try {
    const result = await fn();
    if (run !== entry.run) return;
    body.replaceChildren(panel.render(result, entry.ctx));
    time.textContent = `${ms(result.ms)} server · ${ms(result.roundtrip_ms)} round trip`;
    card.dataset.state = "done";
  } catch (err) {
    if (run !== entry.run) return;
    body.replaceChildren(h("p", { class: "error", "data-testid": "error" }, err.message));
    time.textContent = "";
    card.dataset.state = "error";
  }
}

// Run every panel that answers images on the query (those without `run`, e.g. swap, keep what they show);
// each card shows its own result, error and time as soon as it has them.
async function query(q) {
  showView("explore");
  $("query").hidden = false;
  $("query-img").src = q.file ? URL.createObjectURL(q.file) : apiUrl(q.url);
  $("query-name").textContent = q.name || "";
  await Promise.all(
    state.cards.filter((e) => e.panel.run).map((e) => show(e, () => e.panel.run(q, e.ctx))),
  );
}

function fromFile(file) {
  if (!file) return;
  if (!file.type.startsWith("image/") && file.type !== "") {
    $("off").textContent = `${file.name || "that"} is not an image (${file.type})`;
    return;
  }
  query({ file, name: file.name || "pasted image" });
}

// --------------------------------------------------------------------------------------- input
function wireInput() {
  $("file").addEventListener("change", (e) => fromFile(e.target.files[0]));
  const drop = $("drop");
  for (const kind of ["dragenter", "dragover"]) {
    drop.addEventListener(kind, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    fromFile(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData?.items || [])].find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (item) fromFile(item.getAsFile());
  });
}

// -------------------------------------------------------------------------------------- browse
async function showPage(page) {
  const grid = $("browse-grid");
  try {
    const r = await api(`/api/collection?page=${page}&per_page=24`);
    state.page = r.page;
    state.pages = r.pages;
    $("page-label").textContent = `page ${r.page} of ${r.pages} · ${r.total} images`;
    $("prev").disabled = r.page <= 1;
    $("next").disabled = r.page >= r.pages;
    grid.replaceChildren(
      ...r.items.map((item) =>
        h(
          "figure",
          { class: "thumb", title: `query with ${item.name}`, "data-id": item.id, onclick: () => query(item) },
          h("img", { src: apiUrl(item.url), alt: item.name, loading: "lazy" }),
          h("figcaption", {}, item.name),
        ),
      ),
    );
  } catch (err) {
    grid.replaceChildren(h("p", { class: "error" }, err.message));
  }
}

function showView(name) {
  $("view-explore").hidden = name !== "explore";
  $("view-browse").hidden = name !== "browse";
  $("nav-explore").classList.toggle("active", name === "explore");
  $("nav-browse").classList.toggle("active", name === "browse");
  if (name === "browse" && !$("browse-grid").childElementCount) showPage(state.page);
  const hash = `#${name}`;
  if (location.hash !== hash) history.replaceState(null, "", `${location.pathname}${location.search}${hash}`);
}

// ---------------------------------------------------------------------------------------- start
async function start() {
  wireInput();
  $("prev").addEventListener("click", () => showPage(state.page - 1));
  $("next").addEventListener("click", () => showPage(state.page + 1));
  window.addEventListener("hashchange", () => showView(location.hash === "#browse" ? "browse" : "explore"));
  try {
    state.health = await api("/api/health");
  } catch (err) {
    $("status").textContent =
      err instanceof ApiError && err.status === 401
        ? "this server wants a token: open the page as /?token=TOKEN"
        : `server unreachable: ${err.message}`;
    $("status").classList.add("bad");
    return;
  }
  const hl = state.health;
  $("status").textContent = `v${hl.version} · ${hl.collection} images · ${hl.workers} workers`;
  buildPanels(hl);
  showView(location.hash === "#browse" ? "browse" : "explore");
  document.body.dataset.ready = "1"; // tests wait for this
}

start();
