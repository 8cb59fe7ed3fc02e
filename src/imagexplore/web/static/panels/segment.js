// The class overlay with a legend of the classes present (POST /api/segment).
import { h, pct } from "../dom.js";

export default {
  name: "segment",
  title: "Segment",
  run: (query, ctx) => ctx.postImage("/api/segment", query),
  render: (r) =>
    h(
      "div",
      { class: "pair" },
      h("img", { src: r.overlay_png, alt: "segmentation overlay", "data-testid": "overlay" }),
      h(
        "ul",
        { class: "legend", "data-testid": "legend" },
        r.legend.map((e) =>
          h("li", {}, h("span", { class: "swatch", style: { background: e.color } }), `${e.name} `,
            h("span", { class: "prob" }, pct(e.fraction))),
        ),
      ),
    ),
};
