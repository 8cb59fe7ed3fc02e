// The edge map, raw and thinned, with a threshold slider over the thinned map (POST /api/edges).
import { h } from "../dom.js";

// Draw `img` (grey PNG) into `canvas`, keeping pixels ≥ t (0..255) white and the rest black.
function threshold(canvas, img, t) {
  const c = canvas.getContext("2d");
  c.drawImage(img, 0, 0);
  const px = c.getImageData(0, 0, canvas.width, canvas.height);
  const d = px.data;
  for (let i = 0; i < d.length; i += 4) {
    const v = d[i] >= t && d[i] > 0 ? 255 : 0;
    d[i] = d[i + 1] = d[i + 2] = v;
    d[i + 3] = 255;
  }
  c.putImageData(px, 0, 0);
}

export default {
  name: "edges",
  title: "Edges",
  run: (query, ctx) => ctx.postImage("/api/edges", query),
  render(r) {
    const canvas = h("canvas", { width: r.width, height: r.height, "data-testid": "edges-thin" });
    const value = h("output", {}, "0.50");
    const slider = h("input", { type: "range", min: 1, max: 255, value: 128, "aria-label": "threshold" });
    const thin = new Image();
    const redraw = () => {
      value.textContent = (slider.value / 255).toFixed(2);
      if (thin.complete && thin.naturalWidth) threshold(canvas, thin, Number(slider.value));
    };
    thin.onload = redraw;
    thin.src = r.thin_png;
    slider.addEventListener("input", redraw);
    return h(
      "div",
      {},
      h(
        "div",
        { class: "pair" },
        h("figure", {}, h("img", { src: r.edges_png, alt: "edge probability", "data-testid": "edges-raw" }),
          h("figcaption", {}, "probability")),
        h("figure", {}, canvas, h("figcaption", {}, "thinned, ≥ threshold")),
      ),
      h("label", { class: "slider" }, "threshold ", slider, " ", value),
    );
  },
};
