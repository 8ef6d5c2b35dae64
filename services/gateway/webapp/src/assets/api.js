// Shared by the chat app and the admin console: JSON requests, multipart uploads and
// authenticated downloads with the API's error shapes turned into exceptions, and a
// tiny DOM builder. Same origin as the gateway, so no CORS and no absolute URLs.

/** An error answered by the API: `status`, `code`, `message`, `field`. */
export class ApiError extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code;
    this.field = error.field;
  }
}

/**
 * Calls the API. `headers` holds the credentials; `body` is sent as JSON. Resolves to
 * the parsed body (or null), rejects with an ApiError.
 */
export async function request(method, path, headers, body) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, { code: "NETWORK_ERROR", message: "The gateway cannot be reached" });
  }
  const json = await readBody(res);
  if (!res.ok) throw refusal(res, json);
  return json;
}

/**
 * Sends a multipart form to a route of the `/api/chat` dialect (`{success, data}`,
 * errors `{success: false, message, code, field}`). Resolves to `data`, rejects with
 * an ApiError carrying the API's message (`413` too large, `415` type not allowed...).
 */
export async function upload(path, headers, form) {
  let res;
  try {
    // No Content-Type: the browser writes the multipart boundary itself.
    res = await fetch(path, { method: "POST", headers: { ...headers }, body: form });
  } catch (e) {
    throw new ApiError(0, { code: "NETWORK_ERROR", message: "The gateway cannot be reached" });
  }
  const json = await readBody(res);
  if (!res.ok) throw refusal(res, json);
  return json && json.data;
}

/** GETs a file with the credentials in `headers`; resolves to a Blob. */
export async function download(path, headers) {
  let res;
  try {
    res = await fetch(path, { headers: { ...headers } });
  } catch (e) {
    throw new ApiError(0, { code: "NETWORK_ERROR", message: "The gateway cannot be reached" });
  }
  if (!res.ok) throw refusal(res, await readBody(res));
  return res.blob();
}

/** A response's body: parsed JSON, the text when it is not JSON, or null when empty. */
async function readBody(res) {
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch (e) {
    return text;
  }
}

/** The ApiError for a refused request, in either error shape (`{error: {...}}` or `/api/chat`'s). */
function refusal(res, json) {
  if (json && typeof json === "object") {
    if (json.error && typeof json.error === "object") return new ApiError(res.status, json.error);
    if (typeof json.message === "string") return new ApiError(res.status, json);
  }
  return new ApiError(res.status, { message: `HTTP ${res.status}` });
}

/** `el("div", {class: "x", onclick: f}, child, "text")`: an element. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

/** A size in bytes as people read it: `512 B`, `12.3 KB`, `4.0 MB`. */
export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

/** A time as `HH:MM` in the browser's zone. */
export function clock(iso) {
  const d = new Date(iso);
  return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
