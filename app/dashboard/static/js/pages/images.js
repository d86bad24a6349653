// The image browser: a grid of thumbnails with filters, paged by cursor, and one image's page (full image with
// a campaign's boxes drawn over it, EXIF, location, grayscale rendition, label revisions).
import { api } from "../api.js";
import { h, replace, loading, errorBox, empty, fmtDate, fmtNumber, fmtBytes, keyValues, json, link, table } from "../ui.js";

const PER_PAGE = 100;
const FILTERS = ["imageset_id", "camera_make", "camera_model", "type", "md5", "date_taken_from", "date_taken_to"];
const cursorTrail = new Map(); // filters -> cursors of the pages before (for "Previous")

// --- tiles -------------------------------------------------------------------------------------------------

// Full images are fetched only for tiles that have no thumbnail and come into view, a few at a time.
const fallbackQueue = [];
let fallbackRunning = 0;
const observer = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    observer.unobserve(entry.target);
    fallbackQueue.push(entry.target);
  }
  pumpFallbacks();
}, { rootMargin: "200px" }) : null;

function pumpFallbacks() {
  while (fallbackRunning < 4 && fallbackQueue.length) {
    const el = fallbackQueue.shift();
    if (!el.isConnected) continue;
    fallbackRunning += 1;
    api(`/images/${el.dataset.imageId}/url`)
      .then(({ url }) => { if (el.isConnected) showImage(el, url); })
      .catch(() => {})
      .finally(() => { fallbackRunning -= 1; pumpFallbacks(); });
  }
}

function showImage(frame, url) {
  const img = h("img", { src: url, alt: "", loading: "lazy", decoding: "async", referrerpolicy: "no-referrer" });
  img.addEventListener("load", () => frame.classList.add("has-image"));
  img.addEventListener("error", () => img.remove());
  frame.append(img);
}

export function tile({ imageId, thumbnailUrl, caption, sub, href, fallback = true }) {
  const frame = h("div", { class: "tile-frame", dataset: { imageId } },
    h("div", { class: "tile-placeholder", "aria-hidden": "true" }, h("span", {}, "no thumbnail yet")));
  if (thumbnailUrl) showImage(frame, thumbnailUrl);
  else if (fallback && observer) observer.observe(frame);
  return h("a", { class: "tile", href, dataset: { imageId } }, frame,
    h("div", { class: "tile-caption" }, h("span", { class: "tile-title" }, caption), sub ? h("span", { class: "muted small" }, sub) : null));
}

function camera(image) {
  const exif = image.exif || {};
  const make = exif.Make || exif.make || exif.camera_make;
  const model = exif.Model || exif.model || exif.camera_model;
  return [make, model].filter(Boolean).join(" ");
}

// --- grid --------------------------------------------------------------------------------------------------

function toIso(local) {
  if (!local) return "";
  const d = new Date(local);
  return isNaN(d) ? "" : d.toISOString();
}

function toLocal(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export async function renderGrid(page) {
  const q = page.query;
  const filters = Object.fromEntries(FILTERS.map((f) => [f, q[f] || ""]));
  const filterKey = JSON.stringify(filters);
  const cursor = q.cursor || "";
  const trail = cursorTrail.get(filterKey) || [];

  const setSelect = h("select", { name: "imageset_id" }, h("option", { value: "" }, "All image sets"));
  const form = h("form", { class: "filters", onsubmit: (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const next = Object.fromEntries(FILTERS.map((f) => [f, (data.get(f) || "").toString().trim()]));
    next.date_taken_from = toIso(next.date_taken_from);
    next.date_taken_to = toIso(next.date_taken_to);
    if (next.md5) next.md5 = next.md5.toLowerCase();
    cursorTrail.delete(JSON.stringify(next));
    page.go("/images", next);
  } },
  h("label", {}, "Image set", setSelect),
  h("label", {}, "Taken from", h("input", { type: "datetime-local", name: "date_taken_from", value: toLocal(filters.date_taken_from) })),
  h("label", {}, "Taken to", h("input", { type: "datetime-local", name: "date_taken_to", value: toLocal(filters.date_taken_to) })),
  h("label", {}, "Camera make", h("input", { name: "camera_make", value: filters.camera_make, maxlength: 128 })),
  h("label", {}, "Camera model", h("input", { name: "camera_model", value: filters.camera_model, maxlength: 128 })),
  h("label", {}, "Type", h("input", { name: "type", value: filters.type, maxlength: 64 })),
  h("label", {}, "MD5", h("input", { name: "md5", value: filters.md5, pattern: "[0-9a-fA-F]{32}", class: "mono", size: 34 })),
  h("div", { class: "filter-buttons" }, h("button", { class: "btn btn-primary", type: "submit" }, "Apply"),
    h("button", { class: "btn", type: "button", onclick: () => page.go("/images") }, "Clear")));

  const grid = h("div", { class: "grid-area" }, loading("Loading images"));
  const nav = h("div", { class: "pager" });
  replace(page.el, h("div", { class: "page-head" }, h("h1", {}, "Images")), form, grid, nav);

  // The set filter's choices load beside the grid, never in front of it.
  api("/image_sets", { query: { per_page: 200 } }).then((data) => {
    for (const s of data.image_sets) setSelect.append(h("option", { value: s.imageset_id, selected: String(s.imageset_id) === filters.imageset_id }, s.title));
    if (filters.imageset_id && !setSelect.value) setSelect.append(h("option", { value: filters.imageset_id, selected: true }, `#${filters.imageset_id}`));
  }).catch(() => {});

  const query = { ...filters, cursor, per_page: PER_PAGE };
  if (page.features.thumbnailUrls) query.thumbnail_urls = true;
  performance.mark("grid-request");
  const data = await api("/images", { query });
  if (!page.alive()) return;
  performance.mark("grid-response");
  if (!data.images.length) {
    replace(grid, empty(Object.values(filters).some(Boolean) ? "No image matches these filters." : "No images yet."));
  } else {
    replace(grid, h("div", { class: "grid" }, data.images.map((image) => tile({
      imageId: image.image_id, thumbnailUrl: image.thumbnail_url, href: `#/images/${image.image_id}`,
      caption: image.blobstorage_path.split("/").pop(), sub: camera(image) || fmtDate(image.date_taken),
    }))));
  }
  requestAnimationFrame(() => requestAnimationFrame(() => performance.mark("grid-painted")));
  const go = (c, newTrail) => { cursorTrail.set(filterKey, newTrail); page.go("/images", { ...filters, cursor: c }); };
  replace(nav,
    h("button", { class: "btn btn-small", disabled: !cursor, onclick: () => go(trail[trail.length - 1] || "", trail.slice(0, -1)) }, "‹ Previous"),
    h("span", { class: "muted" }, `${fmtNumber(data.images.length)} shown`),
    h("button", { class: "btn btn-small", disabled: !data.next_cursor, onclick: () => go(data.next_cursor, [...trail, cursor]) }, "Next ›"));
}

// --- one image ---------------------------------------------------------------------------------------------

function flatten(value, prefix = "", out = []) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else {
    out.push([prefix, Array.isArray(value) ? JSON.stringify(value) : String(value)]);
  }
  return out;
}

function labelColor(label) {
  let hash = 0;
  for (const ch of label) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return `hsl(${hash % 360} 85% 55%)`;
}

function overlay(objects, width, height) {
  const svg = h("svg:svg", { viewBox: `0 0 ${width} ${height}`, class: "boxes", "aria-label": `${objects.length} boxes` });
  const size = Math.max(10, Math.round(width / 45));
  for (const o of objects) {
    const b = o.bounding_box, color = labelColor(o.label);
    const group = h("svg:g", { class: "box", dataset: { label: o.label } },
      h("svg:title", {}, `${o.label}${o.confidence !== null && o.confidence !== undefined ? ` (${Math.round(o.confidence * 100)}%)` : ""}`),
      h("svg:rect", { x: b.xmin, y: b.ymin, width: b.xmax - b.xmin, height: b.ymax - b.ymin, stroke: color,
        "stroke-width": Math.max(1.5, width / 400), fill: "none", "vector-effect": "non-scaling-stroke" }),
      h("svg:rect", { x: b.xmin, y: Math.max(0, b.ymin - size * 1.3), width: Math.min(width - b.xmin, size * 0.62 * o.label.length + size * 0.6), height: size * 1.3, fill: color }),
      h("svg:text", { x: b.xmin + size * 0.3, y: Math.max(size, b.ymin - size * 0.3), "font-size": size, class: "box-label" }, o.label));
    svg.append(group);
  }
  return svg;
}

async function campaignChoices(page) {
  if (page.can.read) return (await api("/campaigns", { query: { per_page: 200 } })).campaigns;
  return Promise.all((page.me.campaign_ids || []).map((id) => api(`/campaigns/${id}`)));
}

export async function renderOne(page) {
  const id = page.params[0];
  const image = await api(`/images/${id}/metadata`);
  if (!page.alive()) return;
  const width = image.file.dimensions.width, height = image.file.dimensions.height;
  const figure = h("div", { class: "figure" }, loading("Loading image"));
  const boxesInfo = h("div", { class: "small muted" });
  const select = h("select", { "aria-label": "campaign", name: "campaign" }, h("option", { value: "" }, "Latest finished campaign with labels"));
  const revisions = h("div");
  const gray = h("div");
  const loc = image.location_taken;

  replace(page.el,
    h("div", { class: "page-head" }, h("h1", {}, image.blobstorage_path.split("/").pop()),
      image.imageset && page.can.read ? link(`#/images?imageset_id=${image.imageset.imageset_id}`, `‹ ${image.imageset.title}`) : null),
    h("div", { class: "image-layout" },
      h("section", { class: "card" }, h("div", { class: "card-head" }, h("h2", {}, "Image"), h("label", { class: "inline" }, "Boxes from ", select)), figure, boxesInfo),
      h("div", { class: "side" },
        h("section", { class: "card" }, h("h2", {}, "Catalogue"), keyValues([
          ["Image id", String(image.image_id)],
          ["Image set", image.imageset ? image.imageset.title : "—"],
          ["Taken", fmtDate(image.date_taken)],
          ["Camera", camera(image) || "—"],
          ["Type", image.type || "—"],
          ["File", `${image.file.filetype || "?"} · ${fmtBytes(image.file.filesize)} · ${width ?? "?"}×${height ?? "?"}`],
          ["MD5", h("code", {}, image.md5 || "—")],
          ["Location", loc.lat !== null && loc.lon !== null ? h("span", { class: "mono" }, `${loc.lat.toFixed(6)}, ${loc.lon.toFixed(6)}`) : "—"],
          loc.description ? ["Place", loc.description] : null,
          ["Added", fmtDate(image.date_added)],
          ["Path", h("code", {}, image.blobstorage_path)],
        ])),
        h("section", { class: "card" }, h("h2", {}, "EXIF"),
          image.exif && Object.keys(image.exif).length ? table([{ title: "Tag", cell: (r) => r[0] }, { title: "Value", cell: (r) => r[1] }],
            flatten(image.exif)) : empty("No EXIF in this file.")),
        h("section", { class: "card" }, h("h2", {}, "Grayscale"), gray),
        image.metadata ? h("section", { class: "card" }, h("h2", {}, "Metadata"), json(image.metadata)) : null)),
    h("section", { class: "card" }, h("h2", {}, "Label revisions"), revisions));

  // The full image, and the boxes of the chosen campaign on it.
  let objects = [];
  const draw = () => {
    const img = figure.querySelector("img");
    if (!img) return;
    figure.querySelector(".boxes")?.remove();
    const w = width || img.naturalWidth, hgt = height || img.naturalHeight;
    if (w && hgt) figure.append(overlay(objects, w, hgt));
  };
  api(`/images/${id}/url`).then(({ url }) => {
    const img = h("img", { src: url, alt: image.blobstorage_path, referrerpolicy: "no-referrer" });
    img.addEventListener("load", draw);
    img.addEventListener("error", () => replace(figure, errorBox(new Error("The image could not be loaded from storage."))));
    replace(figure, img);
  }).catch((err) => replace(figure, errorBox(err)));

  const loadObjects = async () => {
    const campaign = select.value;
    replace(boxesInfo, "Loading boxes…");
    try {
      objects = await api(`/images/${id}/objects`, { query: campaign ? { campaigns: campaign } : {} });
    } catch (err) {
      objects = [];
      replace(boxesInfo, errorBox(err));
      return;
    }
    if (!page.alive()) return;
    const from = campaign || (objects[0] && String(objects[0].campaign_id)) || "";
    replace(boxesInfo, objects.length ? `${objects.length} box${objects.length === 1 ? "" : "es"}: ${[...new Set(objects.map((o) => o.label))].join(", ")}` : "No boxes from this campaign.");
    draw();
    loadRevisions(from);
  };

  const loadRevisions = async (campaign) => {
    if (!campaign) { replace(revisions, empty("Choose a campaign to see its revisions of this image's labels.")); return; }
    replace(revisions, loading());
    try {
      const data = await api(`/campaigns/${campaign}/images/${id}/revisions`);
      replace(revisions, table([
        { title: "Revision", cell: (r) => `${r.revision}${r.current ? " (current)" : ""}` },
        { title: "Submitted", cell: (r) => fmtDate(r.date_submitted) },
        { title: "By", cell: (r) => r.submitted_by },
        { title: "Key", cell: (r) => h("code", {}, r.key_id) },
        { title: "Objects", class: "wide", cell: (r) => r.objects.map((o) => o.label).join(", ") || "none" },
      ], data.revisions, { empty: "No labels submitted for this image in that campaign." }));
    } catch (err) {
      replace(revisions, errorBox(err));
    }
  };

  select.addEventListener("change", () => {
    history.replaceState(null, "", `#/images/${id}${select.value ? `?campaign=${select.value}` : ""}`);
    loadObjects();
  });
  campaignChoices(page).then((campaigns) => {
    for (const c of campaigns) select.append(h("option", { value: c.campaign_id, selected: String(c.campaign_id) === page.query.campaign }, `${c.title} (${c.status})`));
    if (page.query.campaign && !select.value) select.append(h("option", { value: page.query.campaign, selected: true }, `#${page.query.campaign}`));
  }).catch(() => {}).finally(loadObjects);

  if (page.features.renditionUrls) {
    replace(gray, h("button", { class: "btn", onclick: async (event) => {
      event.target.disabled = true;
      try {
        const { url } = await api(`/images/${id}/url`, { query: { rendition: "grayscale" } });
        replace(gray, h("img", { src: url, alt: "grayscale rendition", class: "gray", referrerpolicy: "no-referrer" }));
      } catch (err) {
        replace(gray, errorBox(err));
      }
    } }, "Show grayscale rendition"));
  } else {
    replace(gray, empty("This server does not offer renditions as URLs yet."));
  }
}
