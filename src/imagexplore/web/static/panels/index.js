// The panels, in page order. A panel is one module whose default export is
//   { name, title, run?(query, ctx) → Promise<result>, render(result, ctx) → Node, init?(body, ctx) → Node }
// `name` is its key in /api/health's "panels" (the card appears only when that is true); `query` is
// {file, name} (an upload) or {id, name, url} (a collection image); `ctx` is {api, apiUrl, postImage, query,
// show} — ctx.query(q) starts a new query (e.g. from a clicked result); ctx.show(() => promise) shows a result
// the panel asked for itself (e.g. from its own button) in its card, as a query's. `result.ms` is the server's
// time. `init` (optional) gives a panel its own controls, shown above its result (e.g. a text box, a canvas).
// `run` is optional: a panel without it does not answer the page's image queries (swap).
// `hint` (optional): the card's text before its first result (default: waiting for an image).
// A later chapter adds its panel as one module and one line here.

import classify from "./classify.js";
import edges from "./edges.js";
import segment from "./segment.js";
import similar from "./similar.js";
import swap from "./swap.js";
import text from "./text.js";
import translate from "./translate.js";

export const PANELS = [classify, edges, segment, similar, text, translate, swap];
