// Text ↔ image (a match checkpoint): type a sentence → the collection's best images (POST /api/search_text);
// each image query → its best captions among the checkpoint's test captions (POST /api/captions).
import { h, ms } from "../dom.js";

function imageGrid(results, ctx) {
  if (!results.length) return h("p", { class: "hint" }, "no image");
  return h(
    "div",
    { class: "grid", "data-testid": "text-grid" },
    results.map((s) =>
      h(
        "figure",
        { class: "thumb", title: `query with ${s.name}`, "data-id": s.id, onclick: () => ctx.query(s) },
        h("img", { src: ctx.apiUrl(s.url), alt: s.name }),
        h("figcaption", {}, s.score.toFixed(3)),
      ),
    ),
  );
}

export default {
  name: "text",
  title: "Text ↔ image",
  // the sentence box, above the per-image captions
  init(el, ctx) {
    const input = h("input", { type: "search", placeholder: "a sentence, e.g. a red car on a road", "data-testid": "text-query" });
    const out = h("div", { class: "text-results" });
    const time = h("span", { class: "hint" });
    const go = async (e) => {
      e.preventDefault();
      if (!input.value.trim()) return;
      time.textContent = "searching…";
      try {
        const r = await ctx.api("/api/search_text", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ text: input.value, k: 8 }),
        });
        out.replaceChildren(imageGrid(r.results, ctx));
        out.dataset.state = "done";
        time.textContent = `${ms(r.ms)} server · ${ms(r.roundtrip_ms)} round trip`;
      } catch (err) {
        out.replaceChildren(h("p", { class: "error", "data-testid": "error" }, err.message));
        time.textContent = "";
      }
    };
    const form = h("form", { class: "text-form", onsubmit: go }, input, h("button", { type: "submit" }, "search"), " ", time);
    return h("div", {}, form, out);
  },
  run: (query, ctx) => ctx.postImage("/api/captions", query, { k: 5 }),
  render: (r) =>
    h(
      "div",
      {},
      h(
        "ol",
        { class: "captions", "data-testid": "captions" },
        r.captions.map((c) => h("li", {}, h("span", {}, c.text), h("span", { class: "prob" }, c.score.toFixed(3)))),
      ),
      // a JMC checkpoint also classifies: the image alone, and the image with its best caption
      r.categories
        ? h(
            "p",
            { class: "hint", "data-testid": "categories" },
            "category: ",
            r.categories.map((c) => `${c.name} ${(100 * c.p).toFixed(0)} %`).join(" · "),
            r.category_with_caption ? ` — with its best caption: ${r.category_with_caption}` : "",
          )
        : "",
    ),
};
