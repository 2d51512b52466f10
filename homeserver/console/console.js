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
  nav_media: ["Media", "Médias"],
  nav_reports: ["Reports", "Signalements"],
  nav_activity: ["Activity", "Activité"],
  media_title: ["Media usage per user", "Médias par utilisateur"],
  media_caption: ["Local uploads, largest users first", "Fichiers envoyés ici, les plus gros utilisateurs d'abord"],
  col_files: ["Files", "Fichiers"],
  col_size: ["Total size", "Taille totale"],
  col_media: ["Media", "Médias"],
  show_media: ["Show media", "Voir les médias"],
  media_of: ["Media of ", "Médias de "],
  quarantine: ["Quarantine", "Mettre en quarantaine"],
  unquarantine: ["Release", "Lever la quarantaine"],
  quarantined: ["quarantined", "en quarantaine"],
  reports_title: ["Reports from users", "Signalements des utilisateurs"],
  event_reports_caption: ["Reported events, newest first", "Événements signalés, les plus récents d'abord"],
  room_reports_caption: ["Reported rooms, newest first", "Salons signalés, les plus récents d'abord"],
  user_reports_caption: ["Reported users, newest first", "Utilisateurs signalés, les plus récents d'abord"],
  col_reporter: ["Reported by", "Signalé par"],
  col_sender: ["Sender of the event", "Auteur de l'événement"],
  col_reason: ["Reason", "Motif"],
  col_score: ["Score", "Score"],
  col_reported_user: ["Reported user", "Utilisateur signalé"],
  dismiss: ["Dismiss", "Classer"],
  dismiss_label: ["Dismiss the report of ", "Classer le signalement de "],
  activity_title: ["Traffic and federation over time", "Trafic et fédération dans le temps"],
  activity_intro: ["Counted by this server since it started, per interval; the last interval is the one under way.",
    "Compté par ce serveur depuis son démarrage, par intervalle ; le dernier intervalle est celui en cours."],
  chart_traffic: ["Client and federation requests received", "Requêtes reçues (clients et fédération)"],
  chart_federation: ["Room events: sent by local users, received from other servers; refused from other servers",
    "Événements : envoyés par les utilisateurs locaux, reçus d'autres serveurs ; refusés à d'autres serveurs"],
  s_requests: ["Requests", "Requêtes"],
  s_local_events: ["Local events", "Événements locaux"],
  s_remote_events: ["Received over federation", "Reçus par la fédération"],
  s_federation_rejected: ["Refused", "Refusés"],
  chart_summary: ["{series}: {total} over {minutes} min, at most {max} per {interval} s",
    "{series} : {total} en {minutes} min, au plus {max} par {interval} s"],
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
const PAGES = ["federation", "users", "rooms", "media", "reports", "activity", "audit"];
const SVG = "http://www.w3.org/2000/svg";
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

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}

function svg(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  Object.entries(attrs).forEach(([k, v]) => el.setAttribute(k, v));
  if (text != null) el.textContent = text;
  return el;
}

// A step chart of some series of counts per interval ({ts, key: count}), as inline SVG with a text summary.
function chart(container, data, keys) {
  const W = 720, H = 220, L = 48, B = 28, T = 12, R = 12;
  const points = data.points;
  const max = Math.max(1, ...points.flatMap((p) => keys.map((k) => p[k])));
  const first = points.length ? points[0].ts - data.interval_ms : 0, last = points.length ? points[points.length - 1].ts : 1;
  const x = (ts) => L + (W - L - R) * (last === first ? 1 : (ts - first) / (last - first));
  const y = (v) => H - B - (H - B - T) * v / max;
  const summary = keys.map((k) => t("chart_summary").replace("{series}", t("s_" + k))
    .replace("{total}", points.reduce((a, p) => a + p[k], 0)).replace("{max}", Math.max(0, ...points.map((p) => p[k])))
    .replace("{minutes}", Math.round((last - first) / 60000)).replace("{interval}", data.interval_ms / 1000)).join("; ");
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": summary });
  root.appendChild(svg("title", {}, summary));
  [0, 0.5, 1].forEach((f) => {
    root.appendChild(svg("line", { x1: L, x2: W - R, y1: y(max * f), y2: y(max * f), stroke: "#ddd" }));
    root.appendChild(svg("text", { x: L - 6, y: y(max * f) + 4, "text-anchor": "end" }, Math.round(max * f)));
  });
  root.appendChild(svg("text", { x: L, y: H - 8 }, first ? when(first) : ""));
  root.appendChild(svg("text", { x: W - R, y: H - 8, "text-anchor": "end" }, points.length ? when(last) : ""));
  const colours = ["#000091", "#18753c", "#b34000"];
  keys.forEach((k, i) => {
    // A step per interval: its count held from the interval's start to its end.
    const coords = points.flatMap((p, j) => [[j ? points[j - 1].ts : first, p[k]], [p.ts, p[k]]])
      .map(([ts, v]) => x(ts).toFixed(1) + "," + y(v).toFixed(1));
    root.appendChild(svg("polyline", { points: coords.join(" "), fill: "none", stroke: colours[i], "stroke-width": 2,
      "data-series": k }));
  });
  const legend = document.createElement("ul");
  legend.className = "legend";
  keys.forEach((k, i) => {
    const li = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "s" + i;
    li.append(swatch, t("s_" + k));
    legend.appendChild(li);
  });
  container.replaceChildren(root, legend);
}

function roomLabel(r) {
  const both = document.createElement("span");
  const name = document.createElement("span");
  name.textContent = r.name || r.canonical_alias || r.room_id;
  const id = document.createElement("small");
  id.textContent = r.room_id;
  both.append(name, document.createElement("br"), id);
  return both;
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
      cell(row, roomLabel(r));
      cell(row, r.joined_members + " (" + r.joined_local_members + ")");
      cell(row, r.join_rules);
      cell(row, rules[data.rooms.indexOf(r)] || t("rule_none"));
      cell(row, r.encryption || t("no"));
    });
  },
  async media() {
    const data = await api("GET", "/_synapse/admin/v1/statistics/users/media?limit=100&order_by=media_length&dir=b");
    fill($("media-rows"), data.users, (row, u) => {
      cell(row, u.user_id); cell(row, u.displayname); cell(row, u.media_count); cell(row, bytes(u.media_length));
      cell(row, button(t("show_media"), (ev) => showMedia(ev.target, u.user_id), t("show_media") + ": " + u.user_id));
    });
  },
  async reports() {
    const [events, rooms, users] = await Promise.all([
      api("GET", "/_synapse/admin/v1/event_reports?limit=100"), api("GET", "/_synapse/admin/v1/room_reports?limit=100"),
      api("GET", "/_hexagone/admin/v1/user_reports?limit=100")]);
    const dismiss = (path, what) => button(t("dismiss"), async () => { await api("DELETE", path, {}); await show("reports"); },
      t("dismiss_label") + what);
    fill($("event-report-rows"), events.event_reports, (row, r) => {
      row.dataset.reportId = r.id;
      cell(row, when(r.received_ts)); cell(row, r.user_id); cell(row, roomLabel(r)); cell(row, r.sender);
      cell(row, r.reason); cell(row, r.score);
      cell(row, dismiss("/_synapse/admin/v1/event_reports/" + r.id, r.event_id));
    });
    fill($("room-report-rows"), rooms.room_reports, (row, r) => {
      cell(row, when(r.received_ts)); cell(row, r.user_id); cell(row, roomLabel(r)); cell(row, r.reason);
    });
    fill($("user-report-rows"), users.user_reports, (row, r) => {
      cell(row, when(r.received_ts)); cell(row, r.user_id); cell(row, r.target_user_id); cell(row, r.reason);
      cell(row, dismiss("/_hexagone/admin/v1/user_reports/" + r.id, r.target_user_id));
    });
  },
  async activity() {
    const data = await api("GET", "/_hexagone/admin/v1/traffic?since=" + (Date.now() - 3600 * 1000));
    chart($("chart-traffic"), data, ["requests"]);
    chart($("chart-federation"), data, ["local_events", "remote_events", "federation_rejected"]);
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

async function showMedia(target, userId) {
  const data = await api("GET", "/_synapse/admin/v1/users/" + encodeURIComponent(userId) + "/media?limit=100&dir=b");
  const server = userId.slice(userId.indexOf(":") + 1);
  const list = document.createElement("ul");
  list.setAttribute("aria-label", t("media_of") + userId);
  data.media.forEach((m) => {
    const li = document.createElement("li");
    li.dataset.mediaId = m.media_id;
    li.append((m.upload_name || m.media_id) + " (" + (m.media_type || "?") + ", " + bytes(m.media_length || 0) + ") ");
    if (m.quarantined_by) {
      const mark = document.createElement("span");
      mark.className = "quarantined";
      mark.textContent = t("quarantined") + " ";
      li.appendChild(mark);
    }
    const action = m.quarantined_by ? "unquarantine" : "quarantine";
    li.appendChild(button(t(action), async () => {
      await api("POST", "/_synapse/admin/v1/media/" + action + "/" + encodeURIComponent(server) + "/" + encodeURIComponent(m.media_id), {});
      await showMedia(list, userId);
    }, t(action) + ": " + (m.upload_name || m.media_id)));
    list.appendChild(li);
  });
  target.replaceWith(list);
}

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
  document.querySelectorAll("button.refresh").forEach((b) => b.addEventListener("click", () => show(b.closest("section").id)));
  window.addEventListener("hashchange", () => { route(); $("main").focus(); });
  route();
});
