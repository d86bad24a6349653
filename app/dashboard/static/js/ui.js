// Small DOM helpers. Text always goes in as text nodes (never innerHTML): whatever the API holds cannot run.
export function h(tag, attrs = {}, ...children) {
  const svg = tag.startsWith("svg:");
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4)) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else if (name === "class") el.setAttribute("class", value);
    else if (name === "style") el.style.cssText = value; // through CSSOM: the CSP allows no inline style attribute
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "text") el.textContent = value;
    else if (!svg && name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const loading = (what = "Loading") => h("div", { class: "state loading", role: "status" }, h("span", { class: "spinner" }), `${what}…`);
export const empty = (message) => h("div", { class: "state empty" }, message);
export const errorBox = (err) => h("div", { class: "state error", role: "alert" },
  h("strong", {}, err.status ? `Error ${err.status}: ` : "Error: "), err.message || String(err));

export function fmtDate(value) {
  if (!value) return "—";
  const d = new Date(value);
  return isNaN(d) ? String(value) : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function fmtAgo(value) {
  if (!value) return "—";
  const seconds = Math.round((Date.now() - new Date(value)) / 1000);
  if (seconds < 60) return `${Math.max(seconds, 0)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return fmtDate(value);
}

export const fmtNumber = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString());

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export const badge = (status) => h("span", { class: `badge badge-${status}` }, status);

export function progressBar(done, total, { label } = {}) {
  const pct = total ? Math.min(100, Math.round((100 * done) / total)) : 0;
  return h("div", { class: "progress", title: total === null || total === undefined ? "not counted yet" : `${done} of ${total}` },
    h("div", { class: "progress-track" }, h("div", { class: "progress-fill", style: `width:${pct}%` })),
    h("span", { class: "progress-text" }, label || (total === null || total === undefined ? `${fmtNumber(done)} / ?` : `${fmtNumber(done)} / ${fmtNumber(total)}`)));
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = h("textarea", { class: "offscreen" });
    area.value = text;
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}

export function copyButton(text, label = "Copy") {
  const button = h("button", { type: "button", class: "btn btn-small", onclick: async () => {
    const ok = await copyText(text);
    button.textContent = ok ? "Copied" : "Select and copy";
    setTimeout(() => { button.textContent = label; }, 1500);
  } }, label);
  return button;
}

// A secret shown once, with its copy button.
export function secretField(label, value) {
  return h("div", { class: "secret" },
    h("label", {}, label),
    h("div", { class: "secret-row" }, h("input", { type: "text", readonly: true, value, class: "mono", onfocus: (e) => e.target.select() }),
      copyButton(value)));
}

// A button that asks again before acting (no browser dialog), and shows the API's answer.
export function actionButton(label, action, { confirm, kind = "primary", onError } = {}) {
  let armed = false;
  const button = h("button", { type: "button", class: `btn btn-${kind}` }, label);
  button.addEventListener("click", async () => {
    if (confirm && !armed) {
      armed = true;
      button.textContent = confirm;
      setTimeout(() => { armed = false; button.textContent = label; }, 4000);
      return;
    }
    button.disabled = true;
    try {
      await action();
    } catch (err) {
      if (onError) onError(err); else toast(err.message, "error");
    } finally {
      armed = false;
      button.disabled = false;
      button.textContent = label;
    }
  });
  return button;
}

export function toast(message, kind = "info") {
  let tray = document.getElementById("toasts");
  if (!tray) { tray = h("div", { id: "toasts" }); document.body.append(tray); }
  const note = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  tray.append(note);
  setTimeout(() => note.remove(), kind === "error" ? 8000 : 3500);
}

// Offset pagination as the API answers it ({page, pages, total, ...}).
export function pager(pagination, go) {
  if (!pagination || pagination.pages <= 1) return pagination ? h("div", { class: "pager muted" }, `${fmtNumber(pagination.total)} in all`) : null;
  return h("div", { class: "pager" },
    h("button", { class: "btn btn-small", disabled: !pagination.prev, onclick: () => go(pagination.prev) }, "‹ Previous"),
    h("span", {}, `Page ${pagination.page} of ${fmtNumber(pagination.pages)} · ${fmtNumber(pagination.total)} in all`),
    h("button", { class: "btn btn-small", disabled: !pagination.next, onclick: () => go(pagination.next) }, "Next ›"));
}

export function table(columns, rows, { empty: emptyText = "Nothing here yet.", rowAttrs } = {}) {
  if (!rows.length) return empty(emptyText);
  return h("table", { class: "table" },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class }, c.title)))),
    h("tbody", {}, rows.map((row) => h("tr", rowAttrs ? rowAttrs(row) : {}, columns.map((c) => h("td", { class: c.class }, c.cell(row)))))));
}

export function keyValues(pairs) {
  return h("dl", { class: "kv" }, pairs.filter(Boolean).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
}

export const json = (value) => h("pre", { class: "json" }, value === null || value === undefined ? "—" : JSON.stringify(value, null, 2));

export const link = (href, ...children) => h("a", { href }, ...children);
