// Hexagone's web console: a static front end over the Synapse and Hexagone admin APIs of this server.
// The admin signs in with their Matrix account (client API /login); the token stays in sessionStorage.
"use strict";

// Every text of the page: key -> [English, French].
const TEXT = {
  skip: ["Skip to content", "Aller au contenu"],
  title: ["Hexagone administration", "Administration Hexagone"],
  logout: ["Sign out", "Se déconnecter"],
  nav_label: ["Sections", "Rubriques"],
  nav_federation: ["Federation", "Fédération"],
  nav_users: ["Users", "Utilisateurs"],
  nav_rooms: ["Rooms", "Salons"],
  nav_audit: ["Audit trail", "Journal d'audit"],
  login_title: ["Sign in with your administrator account", "Connexion avec votre compte d'administration"],
  login_user: ["Matrix ID or user name", "Identifiant Matrix ou nom d'utilisateur"],
  login_password: ["Password", "Mot de passe"],
  login_submit: ["Sign in", "Se connecter"],
  login_failed: ["Sign-in failed: ", "Échec de la connexion : "],
  not_admin: ["This account is not a server administrator.", "Ce compte n'administre pas ce serveur."],
  lang: ["Français", "English"],
  lang_label: ["Lire en français", "Read in English"],
  federation_title: ["Federation health per peer", "État de la fédération par serveur pair"],
  refresh: ["Refresh", "Actualiser"],
  federation_caption: ["Servers this server sends to, with their retry state", "Serveurs auxquels ce serveur envoie, avec leur état de nouvel essai"],
  col_peer: ["Peer", "Serveur pair"],
  col_state: ["State", "État"],
  col_last_success: ["Last success", "Dernier succès"],
  col_latency: ["Latency", "Latence"],
  col_last_attempt: ["Last failure", "Dernier échec"],
  col_backoff: ["Backoff", "Attente"],
  col_queue: ["Queue depth", "File d'attente"],
  col_actions: ["Actions", "Actions"],
  up: ["Reachable", "Joignable"],
  down: ["Unreachable", "Injoignable"],
  reset: ["Retry now", "Réessayer"],
  reset_label: ["Retry now: ", "Réessayer : "],
  none: ["none", "aucune"],
  no_peers: ["No peer yet.", "Aucun serveur pair pour l'instant."],
  users_title: ["Users and their devices", "Utilisateurs et leurs appareils"],
  users_search: ["User ID or name contains", "Identifiant ou nom contenant"],
  search: ["Search", "Rechercher"],
  users_caption: ["Local users", "Utilisateurs locaux"],
  col_user: ["User", "Utilisateur"],
  col_displayname: ["Display name", "Nom affiché"],
  col_admin: ["Admin", "Admin"],
  col_deactivated: ["Deactivated", "Désactivé"],
  col_devices: ["Devices", "Appareils"],
  show_devices: ["Show devices", "Voir les appareils"],
  yes: ["yes", "oui"],
  no: ["no", "non"],
  devices_of: ["Devices of ", "Appareils de "],
  last_seen: ["last seen ", "vu le "],
  never: ["never", "jamais"],
  rooms_title: ["Rooms and their access rules", "Salons et leurs règles d'accès"],
  rooms_caption: ["Rooms known to this server", "Salons connus de ce serveur"],
  col_room: ["Room", "Salon"],
  col_members: ["Members (local)", "Membres (locaux)"],
  col_join_rule: ["Join rule", "Règle d'entrée"],
  col_access_rule: ["Access rule", "Règle d'accès"],
  col_encryption: ["Encryption", "Chiffrement"],
  rule_none: ["none (restricted when rules apply)", "aucune (restreint quand les règles s'appliquent)"],
  audit_title: ["Audit trail", "Journal d'audit"],
  audit_kind: ["Kind", "Type"],
  audit_any: ["any", "tous"],
  audit_actor: ["Actor", "Auteur"],
  audit_origin: ["Origin (IP or server)", "Origine (IP ou serveur)"],
  audit_since: ["Since", "Depuis"],
  filter: ["Filter", "Filtrer"],
  audit_caption: ["Security events, newest first", "Événements de sécurité, les plus récents d'abord"],
  col_time: ["Time", "Date"],
  col_kind: ["Kind", "Type"],
  col_actor: ["Actor", "Auteur"],
  col_target: ["Target", "Cible"],
  col_origin: ["Origin", "Origine"],
  col_details: ["Details", "Détails"],
  more: ["Older events", "Événements plus anciens"],
  loading: ["Loading…", "Chargement…"],
  loaded: ["Loaded.", "Chargé."],
  error: ["Error: ", "Erreur : "],
  empty: ["Nothing to show.", "Rien à afficher."],
};
const PAGES = ["federation", "users", "rooms", "audit"];
const $ = (id) => document.getElementById(id);
let lang = sessionStorage.getItem("lang") || ((navigator.language || "en").toLowerCase().startsWith("fr") ? "fr" : "en");
let auditNext = null;

function t(key) { return TEXT[key] ? TEXT[key][lang === "fr" ? 1 : 0] : key; }

function applyLanguage() {
  document.documentElement.lang = lang;
  document.title = t("title");
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.querySelectorAll("[data-i18n-label]").forEach((el) => el.setAttribute("aria-label", t(el.dataset.i18nLabel)));
  $("lang").textContent = t("lang");
  $("lang").setAttribute("aria-label", t("lang_label"));
  $("lang").lang = lang === "fr" ? "en" : "fr";
}

function session() { return { token: sessionStorage.getItem("token"), user: sessionStorage.getItem("user") }; }

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  const token = session().token;
  if (token) headers.Authorization = "Bearer " + token;
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error(data.error || resp.statusText);
    err.status = resp.status;
    err.errcode = data.errcode;
    throw err;
  }
  return data;
}

function status(text) { $("status").textContent = text; }

function cell(row, content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.appendChild(content); else td.textContent = content == null ? "—" : String(content);
  row.appendChild(td);
  return td;
}

function fill(tbody, items, render) {
  tbody.replaceChildren();
  if (!items.length) {
    const row = tbody.insertRow();
    const td = cell(row, t("empty"));
    td.colSpan = tbody.closest("table").tHead.rows[0].cells.length;
  }
  items.forEach((item) => render(tbody.insertRow(), item));
}

function when(ms) { return ms ? new Date(ms).toLocaleString(lang === "fr" ? "fr-FR" : "en-GB") : "—"; }

function duration(ms) {
  if (!ms) return t("none");
  const s = Math.round(ms / 1000);
  return s < 60 ? s + " s" : s < 3600 ? Math.round(s / 60) + " min" : Math.round(s / 360) / 10 + " h";
}

function button(label, onClick, ariaLabel) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  if (ariaLabel) b.setAttribute("aria-label", ariaLabel);
  b.addEventListener("click", onClick);
  return b;
}

const LOADERS = {
  async federation() {
    const data = await api("GET", "/_synapse/admin/v1/federation/destinations?limit=1000");
    fill($("federation-rows"), data.destinations, (row, d) => {
      row.dataset.destination = d.destination;
      cell(row, d.destination);
      const up = !d.retry_interval;
      const badge = document.createElement("span");
      badge.className = "badge " + (up ? "up" : "down");
      badge.textContent = t(up ? "up" : "down");
      cell(row, badge);
      cell(row, when(d.last_success_ts));
      cell(row, d.latency_ms == null ? null : d.latency_ms + " ms");
      cell(row, when(d.failure_ts));
      cell(row, duration(d.retry_interval));
      cell(row, d.queued);
      cell(row, up ? "" : button(t("reset"), async () => {
        await api("POST", "/_synapse/admin/v1/federation/destinations/" + encodeURIComponent(d.destination) + "/reset_connection", {});
        await show("federation");
      }, t("reset_label") + d.destination));
    });
  },
  async users() {
    const name = $("users-search").value.trim();
    const data = await api("GET", "/_synapse/admin/v2/users?limit=100&deactivated=true" + (name ? "&name=" + encodeURIComponent(name) : ""));
    fill($("users-rows"), data.users, (row, u) => {
      cell(row, u.name);
      cell(row, u.displayname);
      cell(row, t(u.admin ? "yes" : "no"));
      cell(row, t(u.deactivated ? "yes" : "no"));
      const td = cell(row, button(t("show_devices"), async (ev) => {
        const devices = await api("GET", "/_synapse/admin/v2/users/" + encodeURIComponent(u.name) + "/devices");
        const list = document.createElement("ul");
        list.setAttribute("aria-label", t("devices_of") + u.name);
        devices.devices.forEach((dev) => {
          const li = document.createElement("li");
          li.textContent = dev.device_id + (dev.display_name ? " (" + dev.display_name + ")" : "") + ", " +
            t("last_seen") + (dev.last_seen_ts ? when(dev.last_seen_ts) : t("never")) +
            (dev.last_seen_ip ? ", " + dev.last_seen_ip : "");
          list.appendChild(li);
        });
        ev.target.replaceWith(list);
      }, t("show_devices") + ": " + u.name));
      td.className = "devices";
    });
  },
  async rooms() {
    const data = await api("GET", "/_synapse/admin/v1/rooms?limit=100");
    const rules = await Promise.all(data.rooms.map((r) =>
      api("GET", "/_synapse/admin/v1/rooms/" + encodeURIComponent(r.room_id) + "/state?type=im.vector.room.access_rules")
        .then((s) => (s.state[0] ? s.state[0].content.rule : null), () => null)));
    fill($("rooms-rows"), data.rooms, (row, r) => {
      const name = document.createElement("span");
      name.textContent = (r.name || r.canonical_alias || r.room_id);
      const id = document.createElement("small");
      id.textContent = r.room_id;
      const both = document.createElement("span");
      both.append(name, document.createElement("br"), id);
      cell(row, both);
      cell(row, r.joined_members + " (" + r.joined_local_members + ")");
      cell(row, r.join_rules);
      cell(row, rules[data.rooms.indexOf(r)] || t("rule_none"));
      cell(row, r.encryption || t("no"));
    });
  },
  async audit(more) {
    const params = new URLSearchParams({ limit: "50" });
    ["kind", "actor", "origin"].forEach((k) => { const v = $("audit-" + k).value.trim(); if (v) params.set(k, v); });
    const since = $("audit-since").value;
    if (since) params.set("since", String(new Date(since).getTime()));
    if (more && auditNext) params.set("from", auditNext);
    const data = await api("GET", "/_hexagone/admin/v1/audit?" + params);
    const tbody = $("audit-rows");
    const render = (row, e) => {
      row.dataset.kind = e.kind;
      cell(row, when(e.ts)); cell(row, e.kind); cell(row, e.actor); cell(row, e.target); cell(row, e.origin);
      const code = document.createElement("code");
      code.textContent = e.details && Object.keys(e.details).length ? JSON.stringify(e.details) : "";
      cell(row, code);
    };
    if (more) data.events.forEach((e) => render(tbody.insertRow(), e)); else fill(tbody, data.events, render);
    auditNext = data.next_token || null;
    $("audit-more").hidden = !auditNext;
  },
};

async function show(page, more) {
  status(t("loading"));
  try {
    await LOADERS[page](more);
    status(t("loaded"));
    document.body.dataset.loaded = page;
  } catch (e) {
    if (e.status === 401) { signOut(); return; }
    status(t("error") + e.message);
  }
}

function route() {
  const signedIn = Boolean(session().token);
  $("login").hidden = signedIn;
  $("nav").hidden = !signedIn;
  $("logout").hidden = !signedIn;
  $("who").textContent = signedIn ? session().user : "";
  const page = PAGES.includes(location.hash.slice(1)) ? location.hash.slice(1) : "federation";
  PAGES.forEach((p) => { $(p).hidden = !signedIn || p !== page; });
  document.querySelectorAll("#nav a").forEach((a) => {
    if (a.hash === "#" + page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
  if (signedIn) show(page);
  else $("login-user").focus();
}

async function signIn(ev) {
  ev.preventDefault();
  $("login-error").textContent = "";
  const user = $("login-user").value.trim();
  try {
    const data = await api("POST", "/_matrix/client/v3/login", {
      type: "m.login.password", identifier: { type: "m.id.user", user }, password: $("login-password").value,
      initial_device_display_name: "Hexagone console",
    });
    sessionStorage.setItem("token", data.access_token);
    try {
      await api("GET", "/_synapse/admin/v1/server_version");
    } catch (e) {
      await api("POST", "/_matrix/client/v3/logout", {}).catch(() => null);
      sessionStorage.removeItem("token");
      $("login-error").textContent = e.status === 403 ? t("not_admin") : t("login_failed") + e.message;
      return;
    }
    sessionStorage.setItem("user", data.user_id);
    $("login-password").value = "";
    route();
    $("main").focus();
  } catch (e) {
    $("login-error").textContent = t("login_failed") + e.message;
  }
}

async function signOut() {
  if (session().token) await api("POST", "/_matrix/client/v3/logout", {}).catch(() => null);
  sessionStorage.removeItem("token");
  sessionStorage.removeItem("user");
  route();
}

// Column headings, from each table's data-columns (text keys).
function buildHeadings() {
  document.querySelectorAll("tr[data-columns]").forEach((tr) => {
    tr.dataset.columns.split(" ").forEach((key) => {
      const th = document.createElement("th");
      th.scope = "col";
      th.dataset.i18n = key;
      tr.appendChild(th);
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  buildHeadings();
  applyLanguage();
  $("lang").addEventListener("click", () => {
    lang = lang === "fr" ? "en" : "fr";
    sessionStorage.setItem("lang", lang);
    applyLanguage();
    route();
  });
  $("login-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", signOut);
  $("users-form").addEventListener("submit", (ev) => { ev.preventDefault(); show("users"); });
  $("audit-form").addEventListener("submit", (ev) => { ev.preventDefault(); show("audit"); });
  $("audit-more").addEventListener("click", () => show("audit", true));
  document.querySelectorAll("button.refresh").forEach((b) => b.addEventListener("click", () => show("federation")));
  window.addEventListener("hashchange", () => { route(); $("main").focus(); });
  route();
});
