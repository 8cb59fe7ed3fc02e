// Top-5 classes with their probabilities (POST /api/classify).
import { h, pct } from "../dom.js";

export default {
  name: "classify",
  title: "Classify",
  run: (query, ctx) => ctx.postImage("/api/classify", query),
  render: (r) =>
    h(
      "ol",
      { class: "top", "data-testid": "top" },
      r.top.map((t, i) =>
        h(
          "li",
          { "data-testid": i === 0 ? "top1" : null, "data-index": t.index },
          h("span", { class: "label" }, t.label),
          h("span", { class: "bar" }, h("span", { style: { width: pct(t.prob) } })),
          h("span", { class: "prob" }, pct(t.prob)),
        ),
      ),
    ),
};
