// The Switchboard console: sign-in, live lists of nodes and jobs and the
// hub figures, forms for the scheduler's user API. Everything live comes
// over the hub (HubClient in hub.js); lists are loaded once per
// (re)connect, never polled.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  const state = {
    session: null,     // GET /console/api/session reply
    hub: null,         // HubClient
    jobs: new Map(),   // id -> job JSON
    nodes: new Map(),  // id -> node JSON
    touched: {jobs: new Set(), nodes: new Set()}, // changed by pushes while a list loads
    loadGen: 0,
    tokens: new Map(), // user -> {token, exp} for the user API
    renderQueued: false,
  };

  // ApiError is a failed request: the HTTP status (0 = network) and the
  // server's {"error"} message.
  class ApiError extends Error {
    constructor(status, message, what) {
      super(message);
      this.status = status;
      this.what = what;
    }
    toString() {
      return this.what + ": " + (this.status ? this.status + " " : "") + this.message;
    }
  }

  async function call(method, path, body, token) {
    const headers = {"Accept": "application/json"};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers["Authorization"] = "Bearer " + token;
    const what = method + " " + path;
    let res;
    try {
      res = await fetch(path, {method, headers, credentials: "same-origin",
        body: body === undefined ? undefined : JSON.stringify(body)});
    } catch (e) {
      throw new ApiError(0, "network error: " + e.message, what);
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = null; }
    }
    if (!res.ok) {
      const msg = data && typeof data.error === "string" ? data.error : (text.trim() || res.statusText);
      throw new ApiError(res.status, msg, what);
    }
    return data;
  }

  const isAdmin = () => state.session && state.session.role === "admin";

  // ---- messages -------------------------------------------------------

  function show(el, text) {
    el.textContent = text;
    el.hidden = !text;
  }

  // banner shows a page-wide message of a kind ("lists", "hub", "cancel",
  // "connection"); clearing a kind leaves another kind's message alone.
  function banner(kind, text) {
    const el = $("banner");
    if (!text && el.dataset.kind !== kind) return;
    el.dataset.kind = text ? kind : "";
    show(el, text);
  }

  function flash(okEl, errEl, text, isError) {
    show(isError ? errEl : okEl, text);
    show(isError ? okEl : errEl, "");
  }

  // ---- sign-in --------------------------------------------------------

  function showLogin(message) {
    state.session = null;
    if (state.hub) { state.hub.stop(); state.hub = null; }
    state.jobs.clear();
    state.nodes.clear();
    state.tokens.clear();
    $("app").hidden = true;
    $("login").hidden = false;
    $("logout").hidden = true;
    $("who").textContent = "";
    setConn("idle", "not connected");
    show($("login-error"), message || "");
  }

  async function login(body, button) {
    button.disabled = true;
    show($("login-error"), "");
    try {
      await call("POST", "/console/api/login", body);
      const s = await call("GET", "/console/api/session");
      $("password").value = "";
      $("token").value = "";
      start(s);
    } catch (e) {
      show($("login-error"), e.status === 401 || e.status === 429 ? e.message : e.toString());
    } finally {
      button.disabled = false;
    }
  }

  async function logout() {
    try { await call("POST", "/console/api/logout", {}); } catch (e) { /* signed out anyway */ }
    showLogin("");
  }

  function signedOutError() {
    const err = new Error("signed out");
    err.signedOut = true;
    return err;
  }

  // session fetches a fresh session (with a hub token); a 401 signs out.
  async function session() {
    try {
      const s = await call("GET", "/console/api/session");
      state.session = s;
      if (s.api) state.tokens.set(s.user, {token: s.api.token, exp: Date.parse(s.api.expiresAt)});
      return s;
    } catch (e) {
      if (e.status === 401) {
        showLogin("Your session has ended; sign in again.");
        throw signedOutError();
      }
      throw e;
    }
  }

  // apiToken returns a user API token for user (own user for a user
  // session; any user for the administrator), refreshed before expiry.
  async function apiToken(user) {
    const t = state.tokens.get(user);
    if (t && t.exp - Date.now() > 30000) return t.token;
    if (!isAdmin()) {
      const s = await session();
      return s.api.token;
    }
    const r = await call("POST", "/console/api/token", {user});
    state.tokens.set(user, {token: r.token, exp: Date.parse(r.expiresAt)});
    return r.token;
  }

  // ---- the live session ------------------------------------------------

  function start(s) {
    state.session = s;
    if (s.api) state.tokens.set(s.user, {token: s.api.token, exp: Date.parse(s.api.expiresAt)});
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
    $("who").textContent = s.role === "admin" ? "administrator" : "user " + s.user;
    document.body.classList.toggle("is-admin", s.role === "admin");
    for (const el of document.querySelectorAll(".admin-only")) el.hidden = s.role !== "admin";
    $("hub-panel").hidden = s.role !== "admin";
    $("no-scheduler").hidden = s.scheduler;
    $("scheduler-panels").hidden = !s.scheduler;
    $("banner").dataset.kind = "";
    show($("banner"), "");
    render();

    let first = true;
    state.hub = new HubClient({
      getToken: async () => {
        // The first dial uses the token of the session just fetched.
        if (first) { first = false; return {token: s.hub.token, url: s.hub.url}; }
        const fresh = await session();
        return {token: fresh.hub.token, url: fresh.hub.url};
      },
      onState: (st, detail) => {
        setConn(st, st + (detail ? ": " + detail : ""));
        if (st === "stopped" && detail) {
          banner("connection", "The hub closed the connection for good: " + detail + ". Reload the page to connect again.");
        }
      },
      onConnected: (res) => {
        // Counters for the curious (and the tests): connects, and
        // publications recovered on reconnects.
        const c = $("conn").dataset;
        c.connects = String(Number(c.connects || 0) + 1);
        let recovered = 0;
        for (const sr of Object.values(res.subs || {})) recovered += (sr.publications || []).length;
        c.recovered = String(Number(c.recovered || 0) + recovered);
        if (!state.session) return;
        if (state.session.scheduler) loadLists();
        if (isAdmin()) loadHub();
      },
      onRefreshed: () => {
        const c = $("conn").dataset;
        c.refreshes = String(Number(c.refreshes || 0) + 1);
      },
      onPublication: onPublication,
    });
    state.hub.start();
  }

  function setConn(st, text) {
    const el = $("conn");
    el.dataset.state = st;
    el.textContent = st === "connected" ? "live" : st === "idle" ? "offline" : st;
    el.title = text;
  }

  // loadLists reads the current jobs and nodes; pushes that arrive while
  // it runs win over the (older) list entries.
  async function loadLists() {
    const gen = ++state.loadGen;
    state.touched.jobs.clear();
    state.touched.nodes.clear();
    try {
      let jobs, nodes;
      if (isAdmin()) {
        [jobs, nodes] = await Promise.all([call("GET", "/console/api/jobs"), call("GET", "/console/api/nodes")]);
      } else {
        const tok = await apiToken(state.session.user);
        [jobs, nodes] = await Promise.all([call("GET", "/jobs", undefined, tok), call("GET", "/nodes", undefined, tok)]);
      }
      if (gen !== state.loadGen) return;
      merge(state.jobs, jobs.jobs || [], state.touched.jobs);
      merge(state.nodes, nodes.nodes || [], state.touched.nodes);
      banner("lists", "");
      render();
    } catch (e) {
      if (e.signedOut) return;
      banner("lists", "Loading the lists failed: " + e.toString());
    }
  }

  // loadHub shows the current hub figures at once; the feed updates them.
  async function loadHub() {
    try {
      renderHub(await call("GET", "/console/api/hub"));
    } catch (e) {
      if (!e.signedOut) banner("hub", "Loading the hub figures failed: " + e.toString());
    }
  }

  function merge(map, list, touched) {
    const fresh = new Map();
    for (const x of list) fresh.set(x.id, x);
    for (const id of touched) {
      const pushed = map.get(id), listed = fresh.get(id);
      if (pushed && !(listed && stale(listed, pushed))) fresh.set(id, pushed);
    }
    map.clear();
    for (const [k, v] of fresh) map.set(k, v);
  }

  function onPublication(channel, data) {
    if (!data || typeof data !== "object") return false;
    switch (data.type) {
      case "job": return upsertJob(data.payload);
      case "node": return upsertNode(data.payload);
      case "hub": renderHub(data.payload); return true;
    }
    return false;
  }

  // stale reports whether x is older than shown, the row the page shows:
  // its rowVersion (every change of the row adds one) is lower, or, for
  // rows without one, its updatedAt is earlier. An equal version is not
  // stale: it carries the same row with fresher hub state (online).
  function stale(x, shown) {
    if (typeof x.rowVersion === "number" && typeof shown.rowVersion === "number") return x.rowVersion < shown.rowVersion;
    return Date.parse(shown.updatedAt) > Date.parse(x.updatedAt);
  }

  function upsertJob(j) {
    if (!j || !j.id) return false;
    const old = state.jobs.get(j.id);
    // Feed events may arrive out of order: an older update, or a running
    // job after it ended, is stale.
    if (old && (stale(j, old) || (terminal(old) && !terminal(j)))) return false;
    state.jobs.set(j.id, j);
    state.touched.jobs.add(j.id);
    render();
    return true;
  }

  const terminal = (j) => j.status === "completed" || j.status === "failed" || j.status === "cancelled";

  function upsertNode(n) {
    if (!n || !n.id) return false;
    const old = state.nodes.get(n.id);
    if (old && stale(n, old)) return false;
    state.nodes.set(n.id, n);
    state.touched.nodes.add(n.id);
    render();
    return true;
  }

  // ---- rendering --------------------------------------------------------

  function render() {
    if (state.renderQueued) return;
    state.renderQueued = true;
    requestAnimationFrame(() => {
      state.renderQueued = false;
      renderNodes();
      renderJobs();
    });
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function cell(main, sub, cls) {
    const td = el("td", cls);
    if (main instanceof Node) td.appendChild(main); else td.appendChild(document.createTextNode(main == null ? "" : String(main)));
    if (sub) td.appendChild(el("span", "sub", sub));
    return td;
  }

  function ago(iso) {
    if (!iso) return "never";
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }

  const num = (x, d) => (typeof x === "number" ? x.toFixed(d) : "–");

  // place puts rows into body in order, keeping the elements of rows that
  // did not change (a row is rebuilt only when its content changes).
  function place(body, rows) {
    rows.forEach((tr, i) => {
      if (body.children[i] !== tr) body.insertBefore(tr, body.children[i] || null);
    });
    while (body.children.length > rows.length) body.lastChild.remove();
  }

  // keyed returns the cached row of x while its signature is unchanged,
  // else builds a new one.
  function keyed(cache, x, sig, build) {
    const c = cache.get(x.id);
    if (c && c.sig === sig) return c.tr;
    const tr = build(x);
    cache.set(x.id, {sig, tr});
    return tr;
  }

  const nodeRows = new Map();
  const jobRows = new Map();

  function prune(cache, map) {
    for (const id of cache.keys()) if (!map.has(id)) cache.delete(id);
  }

  function renderNodes() {
    const list = [...state.nodes.values()].sort((a, b) =>
      (b.online - a.online) || String(a.name || a.id).localeCompare(String(b.name || b.id)));
    prune(nodeRows, state.nodes);
    place($("nodes"), list.map((n) => keyed(nodeRows, n, JSON.stringify(n) + ago(n.lastSeenAt), buildNode)));
    $("nodes-count").textContent = String(list.length);
    $("nodes-empty").hidden = list.length > 0;
  }

  function buildNode(n) {
    const tr = el("tr");
    tr.id = "node-" + n.id;
    tr.dataset.online = String(!!n.online);
    tr.dataset.running = String(n.running || 0);
    const dot = el("span", "dot" + (n.online ? " online" : ""));
    dot.title = n.online ? "online" : "offline";
    tr.appendChild(cell(dot, null, "online"));
    tr.appendChild(cell(n.name || "(unnamed)", n.id, "name"));
    tr.appendChild(cell(n.ownerId || "unclaimed", null, "owner"));
    tr.appendChild(cell(n.capacity, (n.maxParallel || 0) + " parallel / " + (n.totalCores || 0) + " cores", "capacity"));
    tr.appendChild(cell((n.running || 0) + " / " + n.capacity, null, "running"));
    // The stored status (say "draining") persists while the node is away:
    // an offline node reads "offline", its last status beneath.
    tr.appendChild(n.online ? cell(n.status || "", null, "status")
      : cell("offline", n.status ? "last status: " + n.status : null, "status"));
    tr.appendChild(cell(n.hostname || "", [n.platform, n.version].filter(Boolean).join(" "), "host"));
    tr.appendChild(cell(ago(n.lastSeenAt), null, "seen"));
    return tr;
  }

  function renderJobs() {
    const list = [...state.jobs.values()].sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
    prune(jobRows, state.jobs);
    place($("jobs"), list.map((j) => keyed(jobRows, j, JSON.stringify(j), buildJob)));
    $("jobs-count").textContent = String(list.length);
    $("jobs-empty").hidden = list.length > 0;
  }

  function buildJob(j) {
    const tr = el("tr");
    tr.id = "job-" + j.id;
    tr.dataset.status = j.status;
    tr.appendChild(cell(j.id.slice(0, 12), j.accessType + " · priority " + j.priority + " · " + j.iterations + " it", "id"));
    tr.appendChild(cell(j.ownerId, null, "owner"));
    tr.appendChild(cell(el("span", "status " + j.status, j.status), null, "status"));

    const prog = el("td", "progress");
    const bar = el("progress", "bar");
    bar.max = 1;
    bar.value = Math.min(1, Math.max(0, j.progress || 0));
    prog.appendChild(bar);
    prog.appendChild(el("span", "pct", Math.floor((j.progress || 0) * 100) + "%"));
    prog.dataset.progress = String(j.progress || 0);
    tr.appendChild(prog);

    const c = j.chunks || {};
    tr.appendChild(cell((c.completed || 0) + " / " + (c.total || 0),
      "running " + (c.running || 0) + " · pending " + (c.pending || 0) + (c.failed ? " · failed " + c.failed : ""), "chunks"));

    const res = el("td", "result");
    if (j.result) {
      const r = j.result;
      res.appendChild(el("div", "mean", "mean " + num(r.meanDps, 2) + " ± " + num(r.stdDps, 2) + " dps"));
      res.appendChild(el("span", "sub", "min " + num(r.minDps, 2) + " · max " + num(r.maxDps, 2) +
        " · " + r.totalIterations + " it · " + r.chunksCompleted + " chunks"));
    }
    if (j.error) res.appendChild(el("div", "job-error", j.error));
    tr.appendChild(res);

    const act = el("td", "actions");
    if (j.status === "pending" || j.status === "running") {
      const b = el("button", "small danger cancel", "Cancel");
      b.type = "button";
      b.addEventListener("click", () => cancelJob(j, b));
      act.appendChild(b);
    }
    tr.appendChild(act);
    return tr;
  }

  function renderHub(f) {
    if (!f) return;
    $("hub-connections").textContent = String(f.connections);
    $("hub-users").textContent = String(f.users);
    $("hub-channels").textContent = String(f.channels);
    $("hub-subs").textContent = String(f.subs);
    $("hub-cluster").textContent = String((f.nodes || []).length);
    $("hub-time").textContent = f.time ? new Date(f.time).toLocaleTimeString() : "";
    const rows = (f.nodes || []).map((n) => {
      const tr = el("tr");
      tr.appendChild(cell(n.name, n.id));
      tr.appendChild(cell(n.version || ""));
      tr.appendChild(cell(n.connections));
      tr.appendChild(cell(n.users));
      tr.appendChild(cell(n.channels));
      tr.appendChild(cell(n.subs));
      tr.appendChild(cell(uptime(n.uptimeSeconds)));
      return tr;
    });
    $("hub-nodes").replaceChildren(...rows);
  }

  function uptime(s) {
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d";
  }

  // ---- forms --------------------------------------------------------------

  function owner(inputId) {
    if (!isAdmin()) return state.session.user;
    return $(inputId).value.trim() || "admin";
  }

  async function createJob(ev) {
    ev.preventDefault();
    const okEl = $("job-ok"), errEl = $("job-error"), button = $("job-submit");
    flash(okEl, errEl, "", false);
    let config;
    try {
      config = JSON.parse($("job-config").value);
    } catch (e) {
      flash(okEl, errEl, "config: not valid JSON (" + e.message + ")", true);
      return;
    }
    const body = {
      config: config,
      iterations: Number($("job-iterations").value),
      accessType: $("job-access").value,
      priority: Number($("job-priority").value || 0),
    };
    button.disabled = true;
    try {
      const tok = await apiToken(owner("job-owner"));
      const created = await call("POST", "/jobs", body, tok);
      flash(okEl, errEl, "Created job " + created.jobId + " (" + created.chunks + " chunks)", false);
      // The feed brings the job too; reading it closes the gap if the
      // push raced ahead of the reply.
      upsertJob(await call("GET", "/jobs/" + encodeURIComponent(created.jobId), undefined, tok));
    } catch (e) {
      if (!e.signedOut) flash(okEl, errEl, e.toString(), true);
    } finally {
      button.disabled = false;
    }
  }

  async function claimNode(ev) {
    ev.preventDefault();
    const okEl = $("claim-ok"), errEl = $("claim-error"), button = $("claim-submit");
    flash(okEl, errEl, "", false);
    const body = {code: $("claim-code").value.trim(), name: $("claim-name").value.trim()};
    const par = $("claim-parallel").value;
    if (par !== "") body.maxParallel = Number(par);
    button.disabled = true;
    try {
      const tok = await apiToken(owner("claim-owner"));
      const n = await call("POST", "/nodes/claim", body, tok);
      upsertNode(n);
      $("claim-code").value = "";
      flash(okEl, errEl, "Claimed node " + (n.name || n.id), false);
    } catch (e) {
      if (!e.signedOut) flash(okEl, errEl, e.toString(), true);
    } finally {
      button.disabled = false;
    }
  }

  async function cancelJob(j, button) {
    button.disabled = true;
    try {
      let job;
      if (isAdmin()) {
        job = await call("POST", "/console/api/cancel", {jobId: j.id});
      } else {
        job = await call("POST", "/jobs/" + encodeURIComponent(j.id) + "/cancel", {}, await apiToken(state.session.user));
      }
      upsertJob(job);
      banner("cancel", "");
    } catch (e) {
      if (!e.signedOut) banner("cancel", "Cancel failed: " + e.toString());
      button.disabled = false;
    }
  }

  function bind() {
    $("login-admin").addEventListener("submit", (ev) => {
      ev.preventDefault();
      login({password: $("password").value}, $("login-admin-submit"));
    });
    $("login-user").addEventListener("submit", (ev) => {
      ev.preventDefault();
      login({token: $("token").value.trim()}, $("login-user-submit"));
    });
    $("logout").addEventListener("click", logout);
    $("job-form").addEventListener("submit", createJob);
    $("claim-form").addEventListener("submit", claimNode);
    // Relative times ("5 s ago") age without any request.
    setInterval(() => { if (state.session) render(); }, 5000);
  }

  async function boot() {
    bind();
    try {
      start(await call("GET", "/console/api/session"));
    } catch (e) {
      showLogin(e.status === 401 ? "" : e.toString());
    }
  }

  // The feed's entry points, for tests and the browser's console:
  // onPublication(channel, data) as the hub delivers it; they return
  // whether the update was taken.
  window.switchboardConsole = Object.freeze({onPublication, upsertJob, upsertNode});

  boot();
})();
