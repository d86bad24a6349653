// Counts, the ingest histogram and queue health. Each card loads on its own: one slow answer blocks nothing.
import { api } from "../api.js";
import { h, replace, loading, errorBox, empty, fmtNumber, badge, fmtAgo, link } from "../ui.js";
import { stackedMinutes, OUTCOMES } from "../chart.js";

function card(title, body, extra) {
  return h("section", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, title), extra || null), body);
}

async function fill(el, load) {
  replace(el, loading());
  try {
    await load(el);
  } catch (err) {
    replace(el, errorBox(err));
  }
}

// Counted by the API: one page of one item per status (?status=, index-served), its total is the count.
async function countByStatus(path, statuses) {
  const [all, ...each] = await Promise.all([null, ...statuses].map((status) =>
    api(path, { query: { per_page: 1, status } })));
  const counts = Object.fromEntries(statuses.map((s, n) => [s, each[n].pagination.total]));
  return { counts, total: all.pagination.total };
}

function statusCounts(result, href) {
  return h("div", {},
    h("div", { class: "big-number" }, fmtNumber(result.total)),
    h("div", { class: "status-counts" }, Object.entries(result.counts).map(([s, n]) =>
      h("a", { href: `${href}?status=${s}`, class: "status-count" }, badge(s), h("b", {}, fmtNumber(n))))));
}

export async function render(page) {
  const sets = h("div"), imgs = h("div"), camps = h("div"), chart = h("div"), health = h("div");
  let minutes = Number(page.query.minutes) === 1440 ? 1440 : 60;
  let source = ["dropbox", "upload", "url"].includes(page.query.source) ? page.query.source : "all";
  const choose = (m, s) => page.go("/overview", { minutes: m === 60 ? "" : m, source: s === "all" ? "" : s });
  const controls = h("div", { class: "segmented" },
    [60, 1440].map((m) => h("button", { class: `btn btn-small ${m === minutes ? "on" : ""}`, onclick: () => choose(m, source) }, m === 60 ? "Last hour" : "Last day")),
    h("select", { class: "small-select", "aria-label": "source", onchange: (e) => choose(minutes, e.target.value) },
      ["all", "dropbox", "upload", "url"].map((s) => h("option", { value: s, selected: s === source }, s === "all" ? "All sources" : s))));

  replace(page.el,
    h("h1", {}, "Overview"),
    h("div", { class: "cards three" }, card("Image sets", sets), card("Images", imgs), card("Campaigns", camps)),
    card("Files ingested per minute", chart, controls),
    card("Queue health", health));

  fill(sets, async (el) => replace(el, statusCounts(await countByStatus("/image_sets", ["created", "finishing", "finished", "failed"]), "#/image-sets")));
  fill(imgs, async (el) => {
    const data = await api("/images", { query: { per_page: 1 } });
    replace(el, h("div", { class: "big-number" }, fmtNumber(data.pagination.total)), link("#/images", "Browse images ›"));
  });
  fill(camps, async (el) => replace(el, statusCounts(await countByStatus("/campaigns", ["created", "active", "completed", "finished"]), "#/campaigns")));
  fill(chart, (el) => loadHistogram(el, page, minutes, source));
  fill(health, (el) => loadHealth(el, page));
  page.every(30_000, () => loadHistogram(chart, page, minutes, source).catch((err) => replace(chart, errorBox(err))));
}

async function loadHistogram(el, page, minutes, source) {
  let buckets, note = null;
  try {
    buckets = (await api("/monitoring/ingest", { query: { minutes } })).minutes;
    if (source !== "all") buckets = buckets.map((b) => ({ minute: b.minute, ...b.by_source[source] }));
  } catch (err) {
    // Until the per-source histogram answers, the dropbox-only finishing figures stand in (said so on the chart).
    const fallback = await api("/monitoring/finishing", { query: { minutes } }).catch(() => null);
    if (!fallback) throw err;
    buckets = source === "all" || source === "dropbox" ? fallback.minutes.map((b) => ({ ...b, failed: 0 })) : [];
    note = h("div", { class: "state warn" }, `The ingest histogram did not answer (${err.message}); showing image set finishing (dropbox) only.`);
  }
  if (!page.alive()) return;
  replace(el, note, buckets.length ? null : empty(`No files in the last ${minutes === 60 ? "hour" : "day"}.`),
    stackedMinutes(buckets, { minutes, series: OUTCOMES }));
}

async function loadHealth(el, page) {
  const [status, queue] = await Promise.all([
    api("/info/status", { okStatuses: [503] }),
    page.can.admin && page.features.queue ? api("/queue") : Promise.resolve(null),
  ]);
  const checks = Object.entries(status.checks).map(([name, c]) =>
    h("div", { class: `check ${c.ok ? "ok" : c.required ? "bad" : "warn"}` },
      h("b", {}, c.ok ? "●" : "○", " ", name.replace(/_/g, " ")), h("span", { class: "muted" }, c.message)));
  const byStatus = { todo: 0, doing: 0, failed: 0 };
  for (const c of queue?.counts || []) byStatus[c.status] += c.count;
  replace(el,
    h("div", { class: "checks" }, checks),
    queue ? h("div", { class: "queue-line" },
      h("span", {}, badge("todo"), " waiting ", h("b", {}, fmtNumber(byStatus.todo))),
      h("span", {}, badge("doing"), " running ", h("b", {}, fmtNumber(byStatus.doing))),
      h("span", {}, badge("failed"), " failed ", h("b", {}, fmtNumber(byStatus.failed))),
      h("span", {}, "workers alive ", h("b", {}, fmtNumber(queue.workers.filter((w) => w.alive).length)),
        queue.workers.length ? h("span", { class: "muted" }, ` · last heartbeat ${fmtAgo(queue.workers[0].last_heartbeat)}`) : null),
      link("#/jobs", "Jobs ›")) : null);
}
