// Shared by the chat app and the admin console: JSON requests with the API's error
// shape turned into exceptions, and a tiny DOM builder. Same origin as the gateway,
// so no CORS and no absolute URLs.

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
  const text = await res.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch (e) {
      json = text;
    }
  }
  if (!res.ok) {
    throw new ApiError(res.status, (json && json.error) || { message: `HTTP ${res.status}` });
  }
  return json;
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

/** A time as `HH:MM` in the browser's zone. */
export function clock(iso) {
  const d = new Date(iso);
  return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
