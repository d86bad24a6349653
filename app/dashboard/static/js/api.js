// The public API with the signed-in key pair. The pair lives in sessionStorage only: gone when the tab closes,
// never in a cookie (the server reads no cookie) and never in a URL.
const KEY = "labelstore.key";
const SECRET = "labelstore.secret";

export const auth = {
  get() {
    const key = sessionStorage.getItem(KEY), secret = sessionStorage.getItem(SECRET);
    return key && secret ? { key, secret } : null;
  },
  set(key, secret) {
    sessionStorage.setItem(KEY, key);
    sessionStorage.setItem(SECRET, secret);
  },
  clear() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(SECRET);
  },
};

export class ApiError extends Error {
  constructor(status, detail, body) {
    super(detail);
    this.status = status;
    this.body = body;
  }
}

function urlFor(path, query) {
  const url = new URL(path.startsWith("/info/") ? path : "/api/v1" + path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    // An empty value is left out, except a cursor: `cursor=` asks for the first page of cursor paging.
    if (value === null || value === undefined || (value === "" && name !== "cursor")) continue;
    for (const one of Array.isArray(value) ? value : [value]) url.searchParams.append(name, String(one));
  }
  return url;
}

// Every answer that is not 2xx becomes an ApiError carrying the problem's detail.
export async function api(path, { method = "GET", body, query, pair, okStatuses = [] } = {}) {
  const creds = pair || auth.get();
  const headers = { Accept: "application/json" };
  if (creds) {
    headers["Authentication-Key"] = creds.key;
    headers["Authentication-Secret"] = creds.secret;
  }
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(urlFor(path, query), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store",
      credentials: "omit", redirect: "error",
    });
  } catch (err) {
    throw new ApiError(0, `The service did not answer (${err.message}).`, null);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!response.ok && !okStatuses.includes(response.status)) {
    const detail = (data && typeof data === "object" && (data.detail || data.title)) ||
      `${response.status} ${response.statusText || "error"}`;
    if (response.status === 401 && !pair) window.dispatchEvent(new CustomEvent("labelstore:unauthorized"));
    throw new ApiError(response.status, detail, data);
  }
  return data;
}

// What the server's API offers, read from its own spec, so the pages use operations that other parts of the
// service add later (thumbnail URLs in listings, renditions as JSON URLs) as soon as they exist.
let features = null;
export async function serverFeatures() {
  if (features) return features;
  const found = { thumbnailUrls: false, renditionUrls: false, ingestHistogram: false, queue: false, jobDetail: false };
  try {
    const response = await fetch("/api/v1/openapi.json", { cache: "no-store", credentials: "omit" });
    const spec = await response.json();
    const params = (op) => (op?.parameters || []).map((p) => p.name);
    found.thumbnailUrls = params(spec.paths["/images"]?.get).includes("thumbnail_urls");
    found.renditionUrls = params(spec.paths["/images/{image_id}/url"]?.get).includes("rendition");
    found.ingestHistogram = Boolean(spec.paths["/monitoring/ingest"]);
    found.queue = Boolean(spec.paths["/queue"]);
    found.jobDetail = Boolean(spec.paths["/jobs/{job_id}"]?.get);
  } catch {
    // an older server: the basics only
  }
  features = found;
  return features;
}
