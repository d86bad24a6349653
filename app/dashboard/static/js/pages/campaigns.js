// Campaigns: progress, labeler, status with the allowed moves (managers), dataset versions with their files,
// and the campaign's images. A labeler's key lists only its own campaigns (the API decides).
import { api } from "../api.js";
import { h, replace, loading, errorBox, empty, fmtDate, fmtNumber, badge, progressBar, pager, table, keyValues,
         json, link, actionButton, toast } from "../ui.js";
import { tile } from "./images.js";

const MOVES = { created: ["active"], active: ["completed"], completed: ["active", "finished"], finished: [] };
const STATUSES = ["created", "active", "completed", "finished", "archived"];
const MOVE_LABEL = { active: "Start (active)", completed: "Mark completed", finished: "Finish" };

export async function renderList(page) {
  const pageNo = Number(page.query.page) || 1;
  const status = STATUSES.includes(page.query.status) ? page.query.status : null;  // from the overview's counts
  const data = await api("/campaigns", { query: { page: pageNo, per_page: 50, status } });
  if (!page.alive()) return;
  replace(page.el, h("div", { class: "page-head" }, h("h1", {}, page.can.read ? "Campaigns" : "My campaigns",
    status ? [" ", badge(status), " ", h("a", { href: "#/campaigns", class: "filter-clear" }, "show all")] : null)),
    h("section", { class: "card" }, table([
      { title: "Title", cell: (c) => link(`#/campaigns/${c.campaign_id}`, c.title) },
      { title: "Status", cell: (c) => badge(c.status) },
      { title: "Progress", class: "wide", cell: (c) => progressBar(c.progress.done, c.progress.total) },
      { title: "Labeler", cell: (c) => c.labeler_email },
      { title: "Created", cell: (c) => fmtDate(c.date_created) },
    ], data.campaigns, { empty: status ? `No campaigns are ${status}.` : "No campaigns yet.", rowAttrs: (c) => ({ dataset: { campaignId: c.campaign_id } }) }),
    pager(data.pagination, (p) => page.go("/campaigns", { page: p, status: status || "" }))));
}

export async function renderOne(page) {
  const id = page.params[0];
  const imagesPage = Number(page.query.page) || 1;
  const info = h("div", {}, loading()), moves = h("div", { class: "actions" }), datasets = h("div"), images = h("div", {}, loading());
  replace(page.el, h("div", { class: "page-head" }, h("h1", { class: "title" }, "Campaign"), link("#/campaigns", "‹ All campaigns")),
    h("div", { class: "cards two" },
      h("section", { class: "card" }, h("h2", {}, "Campaign"), info, moves),
      page.can.read ? h("section", { class: "card" }, h("h2", {}, "Dataset versions"), datasets) : null),
    h("section", { class: "card" }, h("h2", {}, "Images"), images));

  let campaign = await api(`/campaigns/${id}`);
  if (!page.alive()) return;
  const draw = () => {
    page.el.querySelector("h1.title").replaceChildren(campaign.title, " ", badge(campaign.status));
    replace(info, keyValues([
      ["Status", badge(campaign.status)],
      ["Progress", progressBar(campaign.progress.done, campaign.progress.total, { label: `${fmtNumber(campaign.progress.done)} of ${fmtNumber(campaign.progress.total)} images labelled` })],
      ["Labeler", campaign.labeler_email],
      ["Labels", (campaign.labels || []).join(", ") || "any"],
      campaign.label_translations ? ["Translations", json(campaign.label_translations)] : null,
      ["Created", `${fmtDate(campaign.date_created)}${campaign.created_by ? ` by ${campaign.created_by}` : ""}`],
      ["Started", fmtDate(campaign.date_started)],
      ["Completed", fmtDate(campaign.date_completed)],
      ["Finished", fmtDate(campaign.date_finished)],
      campaign.metadata ? ["Metadata", json(campaign.metadata)] : null,
    ]));
    replace(moves, page.can.manage ? (MOVES[campaign.status] || []).map((to) => actionButton(MOVE_LABEL[to], async () => {
      campaign = await api(`/campaigns/${id}`, { method: "PUT", body: { new_status: to } });
      toast(`Campaign is ${campaign.status}`);
      draw();
      if (page.can.read) loadDatasets();
    }, { kind: to === "finished" ? "primary" : "secondary", confirm: to === "finished" ? "Really finish? (builds a dataset)" : null })) : null);
  };
  draw();

  const loadDatasets = async () => {
    try {
      const data = await api(`/campaigns/${id}/datasets`);
      if (!page.alive()) return;
      const files = h("div");
      replace(datasets,
        page.can.manage && ["completed", "finished"].includes(campaign.status) ? actionButton("Build a new version", async () => {
          await api(`/campaigns/${id}/datasets`, { method: "POST" });
          toast("Dataset version queued");
          loadDatasets();
        }, { kind: "secondary" }) : null,
        table([
          { title: "Version", cell: (d) => `v${d.version}` },
          { title: "Status", cell: (d) => badge(d.status) },
          { title: "Images / objects", cell: (d) => `${fmtNumber(d.image_count)} / ${fmtNumber(d.object_count)}` },
          { title: "Azure ML", class: "wide", cell: (d) => (d.azureml.labels_id ? h("span", { class: "small mono" }, d.azureml.labels_asset) : d.error ? h("span", { class: "error-text" }, d.error) : "—") },
          { title: "", cell: (d) => [
            d.status !== "pending" && d.status !== "failed" ? h("button", { class: "btn btn-small", onclick: async () => {
              replace(files, loading());
              try {
                const full = await api(`/campaigns/${id}/datasets/${d.version}`);
                replace(files, h("h3", {}, `Version ${d.version} files`), full.files.length ? h("ul", { class: "files" }, full.files.map((f) =>
                  h("li", {}, h("a", { href: f.url, download: f.name, rel: "noreferrer" }, f.name), h("span", { class: "muted small" }, ` link valid until ${fmtDate(f.expires_at)}`)))) : empty("No files yet."));
              } catch (err) { replace(files, errorBox(err)); }
            } }, "Files") : null,
            d.status === "failed" && page.can.manage ? actionButton("Retry", async () => {
              await api(`/campaigns/${id}/datasets/${d.version}/retry`, { method: "POST" });
              loadDatasets();
            }, { kind: "secondary" }) : null,
          ] },
        ], data.datasets, { empty: "No dataset versions yet." }),
        files);
      if (data.datasets.some((d) => d.status === "pending")) setTimeout(() => page.alive() && loadDatasets(), 2000);
    } catch (err) {
      replace(datasets, errorBox(err));
    }
  };
  if (page.can.read) loadDatasets();

  try {
    const data = await api(`/campaigns/${id}/images`, { query: { page: imagesPage, per_page: 60 } });
    if (!page.alive()) return;
    replace(images, data.images.length ? h("div", { class: "grid" }, data.images.map((i) =>
      tile({ imageId: i.image_id, href: `#/images/${i.image_id}?campaign=${id}`, caption: `#${i.image_id}` }))) : empty("No images in this campaign."),
    pager(data.pagination, (p) => page.go(`/campaigns/${id}`, { page: p })));
  } catch (err) {
    replace(images, errorBox(err));
  }
}
