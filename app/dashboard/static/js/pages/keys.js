// API keys (admin): list, create (the secret shown once, with a copy button), revoke, rotate.
import { api } from "../api.js";
import { h, replace, errorBox, fmtDate, fmtAgo, badge, pager, table, actionButton, secretField, toast } from "../ui.js";

const ROLES = ["admin", "image-admin", "reader", "labeler", "uploader"];

function ids(text) {
  return text.split(/[\s,]+/).filter(Boolean).map(Number).filter((n) => Number.isInteger(n) && n > 0);
}

export async function render(page) {
  const pageNo = Number(page.query.page) || 1;
  const revoked = page.query.revoked === "1";
  const shown = h("div"), list = h("div");
  const form = h("form", { class: "key-form", onsubmit: async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const owner = (data.get("owner") || "").toString().trim();
    const body = { roles: ROLES.filter((r) => data.get(`role-${r}`)) };
    if (data.get("kind") === "device") body.device = owner; else body.email = owner;
    const description = (data.get("description") || "").toString().trim();
    if (description) body.description = description;
    const expires = (data.get("expires_at") || "").toString();
    if (expires) body.expires_at = new Date(expires).toISOString();
    if (body.roles.includes("labeler")) body.campaign_ids = ids(data.get("campaign_ids").toString());
    if (body.roles.includes("uploader")) body.imageset_ids = ids(data.get("imageset_ids").toString());
    try {
      const key = await api("/keys", { method: "POST", body });
      form.reset();
      showSecret(`Key for ${key.owner.name} created`, key);
      await load();
    } catch (err) {
      replace(shown, errorBox(err));
    }
  } },
  h("h2", {}, "New key"),
  h("div", { class: "form-row" },
    h("label", {}, "For", h("select", { name: "kind" }, h("option", { value: "email" }, "a person (email)"), h("option", { value: "device" }, "a device (name)"))),
    h("label", { class: "grow" }, "Email or device name", h("input", { name: "owner", required: true, maxlength: 254 })),
    h("label", {}, "Expires (optional)", h("input", { type: "datetime-local", name: "expires_at" }))),
  h("fieldset", { class: "roles" }, h("legend", {}, "Roles"), ROLES.map((r) => h("label", { class: "check-label" }, h("input", { type: "checkbox", name: `role-${r}`, value: "1" }), r))),
  h("div", { class: "form-row" },
    h("label", {}, "Campaign ids (labeler)", h("input", { name: "campaign_ids", placeholder: "e.g. 3, 7" })),
    h("label", {}, "Image set ids (uploader)", h("input", { name: "imageset_ids", placeholder: "e.g. 12" })),
    h("label", { class: "grow" }, "Description", h("input", { name: "description", maxlength: 500 }))),
  h("button", { class: "btn btn-primary", type: "submit" }, "Create key"));

  function showSecret(title, key) {
    replace(shown, h("div", { class: "card highlight", role: "status" },
      h("h3", {}, title),
      h("p", { class: "small" }, "The secret is shown only now. Copy it and hand it over safely; it cannot be shown again."),
      secretField("Authentication-Key", key.apikey), secretField("Authentication-Secret", key.apisecret),
      h("button", { class: "btn btn-small", onclick: () => replace(shown) }, "Done, hide it")));
  }

  replace(page.el, h("div", { class: "page-head" }, h("h1", {}, "Keys"),
    h("label", { class: "inline" }, h("input", { type: "checkbox", checked: revoked, onchange: (e) => page.go("/keys", { revoked: e.target.checked ? "1" : "" }) }), " show revoked")),
  shown, h("section", { class: "card" }, form), h("section", { class: "card" }, list));

  async function load() {
    const data = await api("/keys", { query: { page: pageNo, per_page: 50, include_revoked: revoked } });
    if (!page.alive()) return;
    replace(list, table([
      { title: "Key", cell: (k) => h("code", {}, k.key_id) },
      { title: "Owner", cell: (k) => `${k.owner.name}${k.owner.kind === "device" ? " (device)" : ""}` },
      { title: "Roles", cell: (k) => k.roles.map((r) => [badge(r), " "]) },
      { title: "Scope", cell: (k) => [k.campaign_ids.length ? `campaigns ${k.campaign_ids.join(", ")}` : "", k.imageset_ids.length ? `sets ${k.imageset_ids.join(", ")}` : ""].filter(Boolean).join("; ") || "—" },
      { title: "Created", cell: (k) => `${fmtDate(k.date_created)}${k.created_by ? ` by ${k.created_by}` : ""}` },
      { title: "Last used", cell: (k) => fmtAgo(k.last_used_at) },
      { title: "Expires", cell: (k) => (k.revoked_at ? badge("revoked") : fmtDate(k.expires_at)) },
      { title: "", cell: (k) => (k.revoked_at || k.key_id === page.me.key_id ? null : h("div", { class: "row-actions" },
        actionButton("Rotate", async () => {
          const rotated = await api(`/keys/${encodeURIComponent(k.key_id)}/rotate`, { method: "POST" });
          showSecret(`New secret for ${k.key_id}`, rotated);
          await load();
        }, { kind: "secondary", confirm: "Really rotate?" }),
        actionButton("Revoke", async () => {
          await api(`/keys/${encodeURIComponent(k.key_id)}`, { method: "DELETE" });
          toast(`${k.key_id} revoked`);
          await load();
        }, { kind: "danger", confirm: "Really revoke?" }))) },
    ], data.keys, { empty: "No keys.", rowAttrs: (k) => ({ dataset: { keyId: k.key_id } }) }),
    pager(data.pagination, (p) => page.go("/keys", { page: p, revoked: revoked ? "1" : "" })));
  }
  try { await load(); } catch (err) { replace(list, errorBox(err)); }
}
