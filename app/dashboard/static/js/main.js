// The dashboard's shell: sign-in, navigation by role, and hash routing (#/images?camera_make=...).
import { api, auth, serverFeatures } from "./api.js";
import { h, replace, loading, errorBox, toast } from "./ui.js";
import * as overview from "./pages/overview.js";
import * as imageSets from "./pages/image_sets.js";
import * as images from "./pages/images.js";
import * as campaigns from "./pages/campaigns.js";
import * as jobs from "./pages/jobs.js";
import * as keys from "./pages/keys.js";

const root = document.getElementById("app");
let session = null; // {me, roles, can, features}
let leaving = [];   // what the current page stops when it is left (timers)
let generation = 0;

const NAV = [
  { path: "/overview", title: "Overview", when: (c) => c.read },
  { path: "/image-sets", title: "Image sets", when: (c) => c.read || c.uploader },
  { path: "/images", title: "Images", when: (c) => c.read },
  { path: "/campaigns", title: "Campaigns", when: (c) => c.read || c.labeler },
  { path: "/jobs", title: "Jobs", when: (c) => c.admin },
  { path: "/keys", title: "Keys", when: (c) => c.admin },
];

const ROUTES = [
  [/^\/overview$/, overview.render],
  [/^\/image-sets$/, imageSets.renderList],
  [/^\/image-sets\/(\d+)$/, imageSets.renderOne],
  [/^\/images$/, images.renderGrid],
  [/^\/images\/(\d+)$/, images.renderOne],
  [/^\/campaigns$/, campaigns.renderList],
  [/^\/campaigns\/(\d+)$/, campaigns.renderOne],
  [/^\/jobs$/, jobs.render],
  [/^\/keys$/, keys.render],
];

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, search = ""] = raw.split("?");
  return { path, query: Object.fromEntries(new URLSearchParams(search)) };
}

export function navigate(path, query = {}) {
  const search = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== "" && v !== null && v !== undefined)).toString();
  location.hash = search ? `${path}?${search}` : path;
}

function signInPage(message) {
  const key = h("input", { name: "key", autocomplete: "username", required: true, placeholder: "lsk_…", class: "mono" });
  const secret = h("input", { name: "secret", type: "password", autocomplete: "current-password", required: true, class: "mono" });
  const problem = h("div");
  const form = h("form", { class: "card signin", onsubmit: async (event) => {
    event.preventDefault();
    replace(problem, loading("Signing in"));
    try {
      const pair = { key: key.value.trim(), secret: secret.value.trim() };
      const me = await api("/me", { pair });
      auth.set(pair.key, pair.secret);
      await start(me);
    } catch (err) {
      replace(problem, errorBox(err));
    }
  } },
  h("h1", {}, "Label Store"),
  h("p", { class: "muted" }, "Sign in with your API key pair. It is kept in this tab only and forgotten when you sign out or close it."),
  message ? h("div", { class: "state error" }, message) : null,
  h("label", {}, "Authentication-Key", key),
  h("label", {}, "Authentication-Secret", secret),
  h("button", { type: "submit", class: "btn btn-primary" }, "Sign in"),
  problem);
  replace(root, h("main", { class: "signin-page" }, form));
  key.focus();
}

function signOut(message) {
  auth.clear();
  session = null;
  stopPage();
  history.replaceState(null, "", location.pathname);
  signInPage(message);
}

function capabilities(roles) {
  const has = (r) => roles.includes(r);
  return { admin: has("admin"), manage: has("admin") || has("image-admin"),
           read: has("admin") || has("image-admin") || has("reader"),
           labeler: has("labeler"), uploader: has("uploader") };
}

async function start(me) {
  const features = await serverFeatures();
  session = { me, roles: me.roles, can: capabilities(me.roles), features };
  const home = NAV.find((n) => n.when(session.can));
  if (!home) {
    signOut(`This key's roles (${me.roles.join(", ")}) have nothing to show here.`);
    return;
  }
  session.home = home.path;
  if (!location.hash || location.hash === "#" || location.hash === "#/") navigate(home.path);
  else route();
}

function shell(content, current) {
  const nav = h("nav", { class: "nav" },
    h("div", { class: "brand" }, "Label Store"),
    NAV.filter((n) => n.when(session.can)).map((n) =>
      h("a", { href: `#${n.path}`, class: current.startsWith(n.path) ? "active" : "" }, n.title)),
    h("div", { class: "who" },
      h("div", { class: "who-name", title: session.me.key_id }, session.me.owner.name),
      h("div", { class: "muted small" }, session.me.roles.join(", ")),
      h("button", { class: "btn btn-small", onclick: () => signOut() }, "Sign out")));
  return h("div", { class: "layout" }, nav, h("main", { class: "content" }, content));
}

function stopPage() {
  for (const stop of leaving) stop();
  leaving = [];
}

async function route() {
  if (!session) return;
  stopPage();
  const mine = ++generation;
  const { path, query } = parseHash();
  const found = ROUTES.find(([pattern]) => pattern.test(path));
  const allowed = NAV.find((n) => path.startsWith(n.path));
  const content = h("div", { class: "page" });
  replace(root, shell(content, path));
  if (!found || (allowed && !allowed.when(session.can))) {
    if (path !== session.home) navigate(session.home);
    return;
  }
  const params = path.match(found[0]).slice(1);
  const page = {
    ...session, query, params, el: content,
    alive: () => mine === generation,
    onLeave: (stop) => leaving.push(stop),
    every: (ms, fn) => { const id = setInterval(() => { if (mine === generation) fn(); }, ms); leaving.push(() => clearInterval(id)); },
    go: navigate,
  };
  replace(content, loading());
  try {
    await found[1](page);
  } catch (err) {
    if (mine === generation) replace(content, errorBox(err));
  }
}

window.addEventListener("hashchange", route);
window.addEventListener("labelstore:unauthorized", () => {
  if (session) signOut("The key pair was refused (revoked, expired or rotated). Sign in again.");
});
window.addEventListener("unhandledrejection", (event) => toast(event.reason?.message || String(event.reason), "error"));

async function boot() {
  if (!auth.get()) return signInPage();
  try {
    const [me] = await Promise.all([api("/me"), serverFeatures()]); // side by side: the first paint waits on both
    await start(me);
  } catch (err) {
    if (err.status === 401) signOut("The key pair was refused. Sign in again.");
    else replace(root, errorBox(err));
  }
}

boot();
