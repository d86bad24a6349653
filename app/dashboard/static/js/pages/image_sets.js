// Image sets: the list with progress that moves while finishing runs, and one set's page (metadata, rules,
// per-file report filtered by outcome, and for managers the upload URL and the Finish button).
import { api } from "../api.js";
import { h, replace, loading, errorBox, empty, fmtDate, fmtNumber, fmtBytes, badge, progressBar, pager, table,
         keyValues, json, link, actionButton, secretField, toast } from "../ui.js";

const REFRESH_MS = 1500;

function setProgress(set) {
  const p = set.progress;
  if (set.status === "created") return h("span", { class: "muted" }, "not finished yet");
  const bar = progressBar(p.done, p.total);
  return h("div", { class: "progress-wrap" }, bar,
    h("div", { class: "small muted" }, `${fmtNumber(p.accepted)} accepted · ${fmtNumber(p.duplicates)} duplicate · ${fmtNumber(p.rejected)} rejected` + (p.failed ? ` · ${fmtNumber(p.failed)} failed` : "")));
}

const STATUSES = ["created", "finishing", "finished", "failed", "deleting"];

export async function renderList(page) {
  const pageNo = Number(page.query.page) || 1;
  const status = STATUSES.includes(page.query.status) ? page.query.status : null;  // from the overview's counts
  const list = h("div", {}, loading());
  const created = h("div");
  const form = page.can.manage ? h("form", { class: "inline-form", onsubmit: async (event) => {
    event.preventDefault();
    const title = event.target.title.value.trim();
    try {
      const set = await api("/image_sets", { method: "POST", body: { title } });
      event.target.reset();
      replace(created, h("div", { class: "card highlight" },
        h("p", {}, "Created ", link(`#/image-sets/${set.imageset_id}`, set.title), ". Upload into this URL (azcopy, Storage Explorer or plain PUTs), then press Finish on the set's page:"),
        secretField("Upload (dropbox) URL", set.dropbox_url),
        h("p", { class: "small muted" }, `Valid until ${fmtDate(set.dropbox_url_expires_at)}. It is shown here once; a new one can be made on the set's page.`)));
      await load();
    } catch (err) {
      replace(created, errorBox(err));
    }
  } }, h("input", { name: "title", required: true, maxlength: 128, placeholder: "New image set title" }),
  h("button", { class: "btn btn-primary", type: "submit" }, "Create image set")) : null;

  replace(page.el, h("div", { class: "page-head" }, h("h1", {}, "Image sets", status ? [" ", badge(status), " ", h("a", { href: "#/image-sets", class: "filter-clear" }, "show all")] : null), form), created, list);

  async function load() {
    let sets, pagination = null;
    if (page.can.read) {
      const data = await api("/image_sets", { query: { page: pageNo, per_page: 50, status } });
      sets = data.image_sets;
      pagination = data.pagination;
    } else { // an uploader sees the sets its key is bound to
      sets = await Promise.all(page.me.imageset_ids.map((id) => api(`/image_sets/${id}`)));
    }
    if (!page.alive()) return;
    replace(list, table([
      { title: "Title", cell: (s) => link(`#/image-sets/${s.imageset_id}`, s.title) },
      { title: "Status", cell: (s) => badge(s.status) },
      { title: "Progress", class: "wide", cell: setProgress },
      { title: "Created", cell: (s) => fmtDate(s.date_created) },
      { title: "By", cell: (s) => s.created_by || "—" },
    ], sets, { empty: status ? `No image sets are ${status}.` : "No image sets yet.", rowAttrs: (s) => ({ dataset: { imagesetId: s.imageset_id, status: s.status } }) }),
    pager(pagination, (p) => page.go("/image-sets", { page: p, status: status || "" })));
    return sets;
  }

  const sets = await load();
  // While any set on the page is finishing, its progress is fetched again.
  let busy = false;
  page.every(REFRESH_MS, async () => {
    if (busy || !(sets || []).length) return;
    if (!list.querySelector('[data-status="finishing"]')) return;
    busy = true;
    try { await load(); } catch (err) { replace(list, errorBox(err)); } finally { busy = false; }
  });
}

function rulesView(rules) {
  const r = rules || {};
  const dims = (min, max) => (min || max ? `${min ?? "any"} – ${max ?? "any"} px` : "any");
  return keyValues([
    ["Formats", (r.formats || []).join(", ") || "the service's default"],
    ["Width", dims(r.min_width, r.max_width)],
    ["Height", dims(r.min_height, r.max_height)],
    ["Largest file", r.max_bytes ? fmtBytes(r.max_bytes) : "the service's default"],
    ["Required EXIF", (r.required_exif || []).join(", ") || "none"],
  ]);
}

export async function renderOne(page) {
  const id = page.params[0];
  const outcome = ["accepted", "duplicate", "rejected", "failed"].includes(page.query.outcome) ? page.query.outcome : "";
  const reportPage = Number(page.query.page) || 1;
  const head = h("div"), summary = h("div"), actions = h("div", { class: "actions" }), report = h("div", {}, loading());
  const filter = h("div", { class: "segmented", role: "group", "aria-label": "outcome" },
    ["", "accepted", "duplicate", "rejected", "failed"].map((o) =>
      h("button", { class: `btn btn-small ${o === outcome ? "on" : ""}`, dataset: { outcome: o || "all" },
        onclick: () => page.go(`/image-sets/${id}`, { outcome: o }) }, o || "all")));

  replace(page.el, head, h("div", { class: "cards two" },
    h("section", { class: "card" }, h("h2", {}, "Set"), summary, actions),
    h("section", { class: "card", id: "rules" }, h("h2", {}, "Validation rules"), h("div", { class: "rules" }))),
  h("section", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Files"), filter), report));

  let set = await api(`/image_sets/${id}`);
  if (!page.alive()) return;
  const drawSet = () => {
    replace(head, h("div", { class: "page-head" }, h("h1", {}, set.title, " ", badge(set.status)), link("#/image-sets", "‹ All image sets")));
    replace(summary,
      keyValues([
        ["Status", badge(set.status)],
        ["Progress", setProgress(set)],
        set.error ? ["Error", h("span", { class: "error-text" }, set.error)] : null,
        ["Created", `${fmtDate(set.date_created)}${set.created_by ? ` by ${set.created_by}` : ""}`],
        ["Finished", fmtDate(set.date_finished)],
        ["Storage folder", h("code", {}, set.blobstorage_path)],
        ["Metadata", json(set.metadata)],
        set.status === "finished" && page.can.read ? ["Images", link(`#/images?imageset_id=${set.imageset_id}`, "Browse this set's images ›")] : null,
      ]));
    replace(page.el.querySelector(".rules"), rulesView(set.validation));
    const manage = page.can.manage;
    const canUpload = manage || (page.me.imageset_ids || []).includes(Number(id));
    const urlBox = h("div");
    replace(actions,
      canUpload && set.status === "created" ? actionButton("Get upload URL", async () => {
        const fresh = await api(`/image_sets/${id}/dropbox_url`, { method: "POST" });
        replace(urlBox, secretField("Upload (dropbox) URL", fresh.dropbox_url),
          h("p", { class: "small muted" }, `Valid until ${fmtDate(fresh.dropbox_url_expires_at)}.`));
      }, { kind: "secondary" }) : null,
      manage && (set.status === "created" || set.status === "failed") ? actionButton(set.status === "failed" ? "Finish again" : "Finish", async () => {
        set = await api(`/image_sets/${id}`, { method: "PUT", body: { new_status: "finished" } });
        toast("Finishing started");
        drawSet();
      }) : null,
      urlBox);
  };
  drawSet();

  const loadReport = async () => {
    const data = await api(`/image_sets/${id}/report`, { query: { outcome, page: reportPage, per_page: 100 } });
    if (!page.alive()) return;
    replace(report, table([
      { title: "File", cell: (f) => h("span", { class: "mono" }, f.name) },
      { title: "Source", cell: (f) => f.source },
      { title: "Outcome", cell: (f) => badge(f.outcome) },
      { title: "Why", class: "wide", cell: (f) => f.reason || "" },
      { title: "Size", cell: (f) => fmtBytes(f.filesize) },
      { title: "Image", cell: (f) => (f.image_id && page.can.read ? link(`#/images/${f.image_id}`, `#${f.image_id}`) : f.image_id ?? "") },
    ], data.files, { empty: outcome ? `No ${outcome} files.` : set.status === "created" ? "Nothing processed yet: upload, then Finish." : "No files." }),
    pager(data.pagination, (p) => page.go(`/image-sets/${id}`, { outcome, page: p })));
  };
  await loadReport().catch((err) => replace(report, errorBox(err)));

  page.every(REFRESH_MS, async () => {
    if (set.status !== "finishing") return;
    try {
      set = await api(`/image_sets/${id}`);
      if (!page.alive()) return;
      drawSet();
      if (set.status !== "finishing") await loadReport();
    } catch (err) {
      replace(summary, errorBox(err));
    }
  });
}
