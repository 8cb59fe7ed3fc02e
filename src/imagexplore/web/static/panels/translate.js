// Image synthesis (a synth checkpoint on paired data): draw a label map with the model's class colours, or a
// sketch with a black pen on white, and get N samples (POST /api/translate); an image dropped, pasted or picked
// on the page is translated too. What the model takes (input kind, size, colours): GET /api/translate/info.
import { h } from "../dom.js";

const ui = { samples: null }; // the "samples" box, read by run() for the page's queries too

function extra() {
  const n = ui.samples?.value.trim();
  return n ? { samples: n } : {};
}

// A pen on `canvas` (drawing-buffer pixels; the element is shown larger, pixelated): round dabs of whole pixels
// with no anti-aliasing, so a label map keeps exact class colours. `pen()` → {colour, size}.
function pen(canvas, current) {
  const c = canvas.getContext("2d");
  let last = null;
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [((e.clientX - r.left) * canvas.width) / r.width, ((e.clientY - r.top) * canvas.height) / r.height];
  };
  const dab = ([x, y]) => {
    const { colour, size } = current();
    c.fillStyle = colour;
    if (size <= 1) return c.fillRect(Math.floor(x), Math.floor(y), 1, 1);
    const r = size / 2;
    for (let j = Math.floor(y - r); j <= Math.ceil(y + r); j++) {
      for (let i = Math.floor(x - r); i <= Math.ceil(x + r); i++) {
        if ((i + 0.5 - x) ** 2 + (j + 0.5 - y) ** 2 <= r * r) c.fillRect(i, j, 1, 1);
      }
    }
  };
  const line = (a, b) => {
    const steps = Math.max(1, Math.ceil(2 * Math.hypot(b[0] - a[0], b[1] - a[1])));
    for (let k = 1; k <= steps; k++) dab([a[0] + ((b[0] - a[0]) * k) / steps, a[1] + ((b[1] - a[1]) * k) / steps]);
  };
  canvas.addEventListener("pointerdown", (e) => {
    e.preventDefault();
    canvas.setPointerCapture?.(e.pointerId);
    last = at(e);
    dab(last);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!last) return;
    const p = at(e);
    line(last, p);
    last = p;
  });
  for (const kind of ["pointerup", "pointercancel", "lostpointercapture"]) canvas.addEventListener(kind, () => (last = null));
}

function controls(info, ctx) {
  ui.samples = h("input", {
    type: "number", min: 1, max: info.samples.max, value: info.samples.default, "data-testid": "translate-samples",
  });
  const samples = h("label", { class: "field" }, "samples ", ui.samples);
  const about = h("p", { class: "hint" }, `${info.input_kind} → ${info.target_kind} · ${info.kind} · trained at ${info.image_size} px`);
  const drawable = info.input_kind === "sketch" || (info.input_kind === "label" && info.palette);
  if (!drawable) {
    const what = info.input_kind === "label" ? "a label map in the model's own colours" : `a ${info.input_kind}`;
    return h("div", {}, about, h("p", { class: "hint" }, `Drop, paste or pick ${what} above.`), samples);
  }
  const size = info.image_size;
  const label = info.input_kind === "label";
  const background = label ? info.palette[0].color : "#ffffff";
  const canvas = h("canvas", {
    width: size, height: size, class: "draw-canvas", "data-testid": "translate-canvas",
    "aria-label": label ? "label map drawing area" : "sketch drawing area", role: "img",
  });
  const clear = () => {
    const c = canvas.getContext("2d");
    c.fillStyle = background;
    c.fillRect(0, 0, size, size);
  };
  clear();
  let colours = null;
  if (label) {
    colours = h(
      "fieldset",
      { class: "palette", "data-testid": "translate-palette" },
      h("legend", {}, "class"),
      info.palette.map((p) =>
        h(
          "label",
          { title: p.name },
          h("input", { type: "radio", name: "translate-colour", value: p.color, checked: p.id === 1, "data-testid": `translate-colour-${p.id}` }),
          h("span", { class: "swatch", style: { background: p.color } }),
          ` ${p.name}`,
        ),
      ),
    );
  }
  const sizes = [1, 2, 4, 8].filter((s) => s <= size / 2);
  const wanted = label ? Math.max(2, Math.round(size / 8)) : 1;
  const brush = h(
    "select",
    { "data-testid": "translate-pen" },
    sizes.map((s) => h("option", { value: s, selected: s === Math.min(wanted, sizes.at(-1)) }, `${s} px`)),
  );
  pen(canvas, () => ({
    colour: label ? colours.querySelector("input:checked")?.value || info.palette[1].color : "#000000",
    size: Number(brush.value),
  }));
  const go = () =>
    ctx.show(
      () =>
        new Promise((resolve, reject) =>
          canvas.toBlob((blob) => {
            if (!blob) return reject(new Error("the drawing could not be encoded"));
            const file = new File([blob], "drawing.png", { type: "image/png" });
            ctx.postImage("/api/translate", { file, name: "drawing.png" }, extra()).then(resolve, reject);
          }, "image/png"),
        ),
    );
  return h(
    "div",
    { class: "draw" },
    h("div", {}, canvas),
    h(
      "div",
      { class: "draw-tools" },
      about,
      colours,
      h("label", { class: "field" }, label ? "brush " : "pen ", brush),
      samples,
      h("div", { class: "buttons" },
        h("button", { type: "button", onclick: go, "data-testid": "translate-run" }, "translate drawing"),
        h("button", { type: "button", onclick: clear, "data-testid": "translate-clear" }, "clear")),
    ),
  );
}

export default {
  name: "translate",
  title: "Translate",
  hint: "draw above, or drop an image on the page",
  init(el, ctx) {
    const box = h("div", { class: "translate-controls" }, h("p", { class: "hint" }, "loading the model's description…"));
    ctx
      .api("/api/translate/info")
      .then((info) => box.replaceChildren(controls(info, ctx)))
      .catch((err) => box.replaceChildren(h("p", { class: "error", "data-testid": "error" }, err.message)));
    return box;
  },
  run: (query, ctx) => ctx.postImage("/api/translate", query, extra()),
  render: (r) =>
    h(
      "div",
      {},
      h(
        "div",
        { class: "samples", "data-testid": "translate-results" },
        r.samples.map((src, i) =>
          h("figure", {},
            h("img", { src, alt: `sample ${i + 1} (${r.target_kind})`, "data-testid": "translate-sample" }),
            h("figcaption", {}, `sample ${i + 1}`)),
        ),
      ),
      h("p", { class: "hint" }, `${r.width}×${r.height} · seed ${r.seed}`),
    ),
};
