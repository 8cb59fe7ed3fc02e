// The DeepIndex' nearest images of the collection; a click queries with that image (POST /api/similar).
import { h } from "../dom.js";

export default {
  name: "similar",
  title: "Similar images",
  run: (query, ctx) => ctx.postImage("/api/similar", query, { k: 8 }),
  render(r, ctx) {
    if (!r.results.length) return h("p", { class: "hint" }, "no image of the collection shares a visual word");
    return h(
      "div",
      { class: "grid", "data-testid": "similar-grid" },
      r.results.map((s) =>
        h(
          "figure",
          { class: "thumb", title: "query with this image", "data-id": s.id, onclick: () => ctx.query(s) },
          h("img", { src: ctx.apiUrl(s.url), alt: `result ${s.id}` }),
          h("figcaption", {}, s.score.toFixed(3)),
        ),
      ),
    );
  },
};
