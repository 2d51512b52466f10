// Hexagone's web console: a static front end over the Synapse and Hexagone admin APIs of this server.
// The admin signs in with their Matrix account (client API /login); the token stays in sessionStorage.
"use strict";

const TEXT = {
  en: {
    skip: "Skip to content", title: "Hexagone administration", logout: "Sign out", nav_label: "Sections",
    nav_federation: "Federation", nav_users: "Users", nav_rooms: "Rooms", nav_audit: "Audit trail",
    login_title: "Sign in with your administrator account", login_user: "Matrix ID or user name",
    login_password: "Password", login_submit: "Sign in", login_failed: "Sign-in failed: ",
    not_admin: "This account is not a server administrator.", lang: "Français", lang_label: "Lire en français",
    federation_title: "Federation health per peer", refresh: "Refresh",
    federation_caption: "Servers this server sends to, with their retry state",
    col_peer: "Peer", col_state: "State", col_last_success: "Last success", col_latency: "Latency",
    col_last_attempt: "Last failure", col_backoff: "Backoff",
    col_queue: "Queue depth", col_actions: "Actions", up: "Reachable", down: "Unreachable",
    reset: "Retry now", reset_label: "Retry now: ", none: "none", no_peers: "No peer yet.",
    users_title: "Users and their devices", users_search: "User ID or name contains", search: "Search",
    users_caption: "Local users", col_user: "User", col_displayname: "Display name", col_admin: "Admin",
    col_deactivated: "Deactivated", col_devices: "Devices", show_devices: "Show devices", yes: "yes", no: "no",
    devices_of: "Devices of ", last_seen: "last seen ", never: "never",
    rooms_title: "Rooms and their access rules", rooms_caption: "Rooms known to this server", col_room: "Room",
    col_members: "Members (local)", col_join_rule: "Join rule", col_access_rule: "Access rule",
    col_encryption: "Encryption", rule_none: "none (restricted when rules apply)",
    audit_title: "Audit trail", audit_kind: "Kind", audit_any: "any", audit_actor: "Actor",
    audit_origin: "Origin (IP or server)", audit_since: "Since", filter: "Filter",
    audit_caption: "Security events, newest first", col_time: "Time", col_kind: "Kind", col_actor: "Actor",
    col_target: "Target", col_origin: "Origin", col_details: "Details", more: "Older events",
    loading: "Loading…", loaded: "Loaded.", error: "Error: ", empty: "Nothing to show.",
  },
  fr: {
    skip: "Aller au contenu", title: "Administration Hexagone", logout: "Se déconnecter", nav_label: "Rubriques",
    nav_federation: "Fédération", nav_users: "Utilisateurs", nav_rooms: "Salons", nav_audit: "Journal d'audit",
    login_title: "Connexion avec votre compte d'administration", login_user: "Identifiant Matrix ou nom d'utilisateur",
    login_password: "Mot de passe", login_submit: "Se connecter", login_failed: "Échec de la connexion : ",
    not_admin: "Ce compte n'administre pas ce serveur.", lang: "English", lang_label: "Read in English",
    federation_title: "État de la fédération par serveur pair", refresh: "Actualiser",
    federation_caption: "Serveurs auxquels ce serveur envoie, avec leur état de nouvel essai",
    col_peer: "Serveur pair", col_state: "État", col_last_success: "Dernier succès", col_latency: "Latence",
    col_last_attempt: "Dernier échec", col_backoff: "Attente",
    col_queue: "File d'attente", col_actions: "Actions", up: "Joignable", down: "Injoignable",
    reset: "Réessayer", reset_label: "Réessayer : ", none: "aucune", no_peers: "Aucun serveur pair pour l'instant.",
    users_title: "Utilisateurs et leurs appareils", users_search: "Identifiant ou nom contenant",
    search: "Rechercher", users_caption: "Utilisateurs locaux", col_user: "Utilisateur",
    col_displayname: "Nom affiché", col_admin: "Admin", col_deactivated: "Désactivé", col_devices: "Appareils",
    show_devices: "Voir les appareils", yes: "oui", no: "non", devices_of: "Appareils de ",
    last_seen: "vu le ", never: "jamais",
    rooms_title: "Salons et leurs règles d'accès", rooms_caption: "Salons connus de ce serveur", col_room: "Salon",
    col_members: "Membres (locaux)", col_join_rule: "Règle d'entrée", col_access_rule: "Règle d'accès",
    col_encryption: "Chiffrement", rule_none: "aucune (restreint quand les règles s'appliquent)",
    audit_title: "Journal d'audit", audit_kind: "Type", audit_any: "tous", audit_actor: "Auteur",
    audit_origin: "Origine (IP ou serveur)", audit_since: "Depuis", filter: "Filtrer",
    audit_caption: "Événements de sécurité, les plus récents d'abord", col_time: "Date", col_kind: "Type",
    col_actor: "Auteur", col_target: "Cible", col_origin: "Origine", col_details: "Détails",
    more: "Événements plus anciens", loading: "Chargement…", loaded: "Chargé.", error: "Erreur : ",
    empty: "Rien à afficher.",
  },
};
const PAGES = ["federation", "users", "rooms", "audit"];
const $ = (id) => document.getElementById(id);
let lang = sessionStorage.getItem("lang") || ((navigator.language || "en").toLowerCase().startsWith("fr") ? "fr" : "en");
let auditNext = null;

function t(key) { return TEXT[lang][key] || TEXT.en[key] || key; }

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

document.addEventListener("DOMContentLoaded", () => {
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
