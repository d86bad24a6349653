// Background jobs (admin): counts per queue and status, workers and their heartbeats, failed jobs with their
// error and traceback, and Retry.
import { api } from "../api.js";
import { h, replace, loading, errorBox, empty, fmtDate, fmtAgo, fmtNumber, badge, pager, table, json, actionButton, toast } from "../ui.js";

const STATUSES = ["", "failed", "todo", "doing", "succeeded", "cancelled", "aborted"];

export async function render(page) {
  const status = STATUSES.includes(page.query.status) ? page.query.status : "failed";
  const pageNo = Number(page.query.page) || 1;
  const counts = h("div", {}, loading()), workers = h("div", {}, loading()), list = h("div", {}, loading());
  const filter = h("div", { class: "segmented", role: "group", "aria-label": "status" }, STATUSES.map((s) =>
    h("button", { class: `btn btn-small ${s === status ? "on" : ""}`, onclick: () => page.go("/jobs", { status: s || "all" }) }, s || "all")));
  replace(page.el, h("div", { class: "page-head" }, h("h1", {}, "Jobs")),
    h("div", { class: "cards two" }, h("section", { class: "card" }, h("h2", {}, "Waiting, running, failed"), counts),
      h("section", { class: "card" }, h("h2", {}, "Workers"), workers)),
    h("section", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Jobs"), filter), list));

  const loadQueue = async () => {
    if (!page.features.queue) {
      replace(counts, empty("This server has no queue overview."));
      replace(workers, empty("—"));
      return;
    }
    const q = await api("/queue");
    if (!page.alive()) return;
    const rows = new Map();
    for (const c of q.counts) {
      const key = `${c.queue}\u0000${c.task}`;
      if (!rows.has(key)) rows.set(key, { queue: c.queue, task: c.task, todo: 0, doing: 0, failed: 0 });
      rows.get(key)[c.status] = c.count;
    }
    replace(counts, table([
      { title: "Queue", cell: (r) => r.queue },
      { title: "Task", cell: (r) => r.task },
      { title: "Waiting", cell: (r) => fmtNumber(r.todo) },
      { title: "Running", cell: (r) => fmtNumber(r.doing) },
      { title: "Failed", cell: (r) => (r.failed ? h("b", { class: "error-text" }, fmtNumber(r.failed)) : "0") },
    ], [...rows.values()], { empty: "Nothing waiting, running or failed." }));
    replace(workers, table([
      { title: "Worker", cell: (w) => `#${w.worker_id}` },
      { title: "Process", cell: (w) => (w.host ? `${w.host}:${w.pid}` : "—") },
      { title: "Started", cell: (w) => fmtDate(w.started_at) },
      { title: "Last heartbeat", cell: (w) => fmtAgo(w.last_heartbeat) },
      { title: "", cell: (w) => badge(w.alive ? "alive" : "silent") },
    ], q.workers, { empty: "No worker is running: jobs wait until one starts." }));
  };

  const detail = async (job, row) => {
    const next = row.nextElementSibling;
    if (next && next.classList.contains("job-detail")) { next.remove(); return; }
    const cell = h("td", { colspan: 7 }, loading());
    row.after(h("tr", { class: "job-detail" }, cell));
    try {
      const full = await api(`/jobs/${job.job_id}`);
      replace(cell, h("div", { class: "job-args" }, h("b", {}, "Arguments "), json(full.arguments)),
        full.failures.length ? full.failures.map((f) => h("div", { class: "failure" },
          h("div", {}, h("b", {}, `Attempt ${f.attempt}`), h("span", { class: "muted" }, ` · ${fmtDate(f.at)}`)),
          h("div", { class: "error-text" }, f.error),
          h("details", { open: true }, h("summary", {}, "Traceback"), h("pre", { class: "traceback" }, f.traceback))))
          : empty("No failed attempt recorded for this job."));
    } catch (err) {
      replace(cell, errorBox(err));
    }
  };

  const loadJobs = async () => {
    const data = await api("/jobs", { query: { status: status || null, page: pageNo, per_page: 50 } });
    if (!page.alive()) return;
    replace(list, table([
      { title: "Job", cell: (j) => `#${j.job_id}` },
      { title: "Task", cell: (j) => j.task },
      { title: "Status", cell: (j) => badge(j.status) },
      { title: "Attempts", cell: (j) => fmtNumber(j.attempts) },
      { title: "Last event", cell: (j) => (j.last_event ? `${j.last_event.replace(/_/g, " ")} · ${fmtAgo(j.last_event_at)}` : "—") },
      { title: "Queue", cell: (j) => j.queue },
      { title: "", cell: (j) => h("div", { class: "row-actions" },
        page.features.jobDetail ? h("button", { class: "btn btn-small", onclick: (e) => detail(j, e.target.closest("tr")) }, "Details") : null,
        j.status === "failed" ? actionButton("Retry", async () => {
          await api(`/jobs/${j.job_id}/retry`, { method: "POST" });
          toast(`Job ${j.job_id} queued again`);
          await refresh();
        }, { kind: "primary" }) : null) },
    ], data.jobs, { empty: status === "failed" ? "No failed jobs. All good." : "No jobs.",
      rowAttrs: (j) => ({ dataset: { jobId: j.job_id, status: j.status } }) }),
    pager(data.pagination, (p) => page.go("/jobs", { status, page: p })));
  };

  let busy = false;
  const refresh = async () => {
    if (busy) return;
    busy = true;
    try {
      await Promise.all([loadQueue().catch((err) => replace(counts, errorBox(err))),
        loadJobs().catch((err) => replace(list, errorBox(err)))]);
    } finally { busy = false; }
  };
  await refresh();
  // Refresh while nothing is opened for reading.
  page.every(3000, () => { if (!list.querySelector(".job-detail")) refresh(); });
}
