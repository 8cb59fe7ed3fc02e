// Clothes swap (a synth checkpoint on person data): pick person A (pose and body) and person B (whose clothes A
// gets) among the server's persons (GET /api/persons) → A wearing B's clothes (POST /api/swap). The first two
// persons are swapped as soon as the gallery loads; each new pick swaps again. Page queries don't concern it.
import { h } from "../dom.js";

function row(label, testid, persons, ctx, onPick) {
  const buttons = persons.map((p) =>
    h(
      "button",
      { type: "button", class: "person", title: p.name, "aria-pressed": "false", "data-id": p.id, onclick: () => onPick(p.id) },
      h("img", { src: ctx.apiUrl(p.url), alt: p.name, width: p.width, height: p.height }),
    ),
  );
  const el = h("div", { class: "persons", role: "group", "aria-label": label, "data-testid": testid }, buttons);
  el.mark = (id) => buttons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.id === id)));
  return h("div", {}, h("p", { class: "row-label" }, label), el);
}

export default {
  name: "swap",
  title: "Swap clothes",
  hint: "",
  init(el, ctx) {
    const box = h("div", { class: "swap-pick" }, h("p", { class: "hint" }, "loading the persons…"));
    const picked = { person: null, clothes: null };
    ctx
      .api("/api/persons")
      .then((r) => {
        let rows;
        const swap = () => {
          rows.person.mark(picked.person);
          rows.clothes.mark(picked.clothes);
          ctx.show(() =>
            ctx.api("/api/swap", {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify(picked),
            }),
          );
        };
        const pick = (which) => (id) => {
          picked[which] = id;
          swap();
        };
        const a = row("person (pose and body)", "swap-person", r.persons, ctx, pick("person"));
        const b = row("wearing the clothes of", "swap-clothes", r.persons, ctx, pick("clothes"));
        rows = { person: a.lastChild, clothes: b.lastChild };
        box.replaceChildren(a, b, h("p", { class: "hint" }, r.source));
        picked.person = r.persons[0].id;
        picked.clothes = (r.persons[1] || r.persons[0]).id;
        swap();
      })
      .catch((err) => ctx.show(() => Promise.reject(err)));
    return box;
  },
  render: (r) =>
    h(
      "figure",
      { class: "swap-result" },
      h("img", { src: r.image, alt: "the person wearing the other's clothes", "data-testid": "swap-result", width: r.width, height: r.height }),
      h("figcaption", {}, `${r.kind} · ${r.width}×${r.height}`),
    ),
};
