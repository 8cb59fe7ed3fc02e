// The JSON API (docs/serve.md). A token given to the page as ?token=T is sent on every call.

const token = new URLSearchParams(location.search).get("token");

// An /api URL that also works in <img src> when the server wants a token.
export function apiUrl(path) {
  if (!token) return path;
  return `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// fetch → JSON; an error answer ({"error": "one line"}) throws ApiError. Adds roundtrip_ms to the result.
export async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token) headers.Authorization = `Bearer ${token}`;
  const t0 = performance.now();
  const r = await fetch(path, { ...options, headers });
  let body;
  try {
    body = await r.json();
  } catch {
    body = { error: `HTTP ${r.status} ${r.statusText}` };
  }
  if (!r.ok) {
    const retry = r.headers.get("Retry-After");
    throw new ApiError(r.status, (body.error || `HTTP ${r.status}`) + (retry ? ` (retry in ${retry} s)` : ""));
  }
  body.roundtrip_ms = performance.now() - t0;
  return body;
}

// POST an image: a collection image by id (JSON) or an uploaded file (multipart field "image").
export function postImage(path, query, extra = {}) {
  if (query.id) {
    return api(path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: query.id, ...extra }),
    });
  }
  const form = new FormData();
  form.append("image", query.file, query.name || "upload");
  for (const [k, v] of Object.entries(extra)) form.append(k, String(v));
  return api(path, { method: "POST", body: form });
}
