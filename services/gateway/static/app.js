/*
 * carbonx web dashboard — plain ES2020, no framework, no build step, no network
 * access beyond the carbonx API itself.
 *
 * Shape: one IIFE; `state` holds the session; `api()` does every request (bearer token,
 * problem+json errors, 401 → sign-in); `refresh*()` functions fetch one panel and hand
 * the JSON to a `render*()` function that builds HTML strings (every value escaped).
 * A 2 s poll refreshes the visible panels; server-sent events, when the API offers
 * them, trigger the same refreshes sooner.
 */
"use strict";
(() => {
  const TOKEN_KEY = "carbonx.token";
  const SYMBOL_KEY = "carbonx.symbol";
  const ENTERPRISE_KEY = "carbonx.enterprise";
  const POLL_MS = 2000;
  const REQUEST_TIMEOUT_MS = 20000;
  const SLOW_EVERY = 8; // compliance, enterprise list, surveillance: every 8th poll (16 s)
  const OPEN_STATES = new Set(["open", "partially_filled"]);

  const state = {
    gen: 0, // bumped on sign-in and sign-out: answers to older requests are dropped
    token: null, me: null,
    markets: [], symbol: null, interval: "1m", candles: [],
    enterpriseId: null, enterprises: [], period: null,
    timer: null, ticks: 0, busy: false,
    stream: null, streamRetry: null, streamFailures: 0,
    apiPaths: null, apiPathsAt: 0, apiPathsLoading: null, // from /openapi.json: what this server offers
    pending: new Set(), pendingTimer: null,
    auditNext: null,
  };

  // ---------------------------------------------------------------- DOM helpers
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  let lastHtml = new WeakMap();

  /** Replace an element's HTML only when it changed (keeps focus, hover and clicks stable). */
  function setHtml(el, html) {
    if (!el || lastHtml.get(el) === html) return;
    el.innerHTML = html;
    lastHtml.set(el, html);
  }
  function setText(el, text) { if (el) el.textContent = text; }
  function esc(value) {
    return String(value ?? "").replace(/[&<>"']/g, (c) =>
      ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }
  const show = (el, visible) => { if (el) el.hidden = !visible; };

  // ---------------------------------------------------------------- formatting
  const GROUP = new Intl.NumberFormat("en-US");
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const pad2 = (n) => String(n).padStart(2, "0");

  /** Integer fen (or basis points) → "1,234.56", exactly (integer arithmetic only). */
  function fmtFen(v) {
    if (v === null || v === undefined || v === "") return "—";
    const n = Number(v);
    if (!Number.isFinite(n)) return esc(v);
    const a = Math.abs(Math.round(n));
    const text = GROUP.format(Math.floor(a / 100)) + "." + pad2(a % 100);
    return n < 0 ? "-" + text : text;
  }
  function fmtQty(v) {
    if (v === null || v === undefined || v === "") return "—";
    return isNum(v) ? GROUP.format(v) : esc(v);
  }
  /** Decimals may arrive as JSON numbers or strings (Python Decimal): show them as given. */
  function fmtDec(v) {
    if (v === null || v === undefined || v === "") return "—";
    if (isNum(v)) return new Intl.NumberFormat("en-US", { maximumFractionDigits: 3 }).format(v);
    if (typeof v === "boolean") return v ? "yes" : "no";
    return esc(typeof v === "object" ? JSON.stringify(v) : v);
  }
  /**
   * Kilograms (a decimal string, as the API sends `*_kg`, or an integer) → tonnes, exactly:
   * rounded half up to the kilogram, then the decimal point moves three places (no
   * floating point); trailing zeros are dropped. "3243300" → "3,243.3".
   */
  function fmtKgAsT(v) {
    if (v === null || v === undefined || v === "") return "—";
    const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(String(v).trim());
    if (!m) return esc(v);
    let kg = BigInt(m[2]);
    if (m[3] && m[3][0] >= "5") kg += 1n;
    const frac = String(kg % 1000n).padStart(3, "0").replace(/0+$/, "");
    return (m[1] && kg !== 0n ? "-" : "") + GROUP.format(kg / 1000n) + (frac ? "." + frac : "");
  }
  const fmtPct = (bps) => (bps === null || bps === undefined ? "—" : fmtFen(bps) + "%");

  /** "60", "60.5", "1,060.05" → integer fen; null when not a valid CNY amount with ≤ 2 decimals. */
  function parseFen(text) {
    const m = /^(\d+)(?:\.(\d{0,2}))?$/.exec(String(text).trim().replace(/,/g, ""));
    if (!m) return null;
    const fen = Number(m[1]) * 100 + Number((m[2] || "").padEnd(2, "0"));
    return Number.isSafeInteger(fen) ? fen : null;
  }

  /** Times come as µs since the epoch (the contract); ms, seconds and ISO strings are tolerated. */
  function toDate(t) {
    if (t === null || t === undefined || t === "") return null;
    if (typeof t === "string" && /^\d+$/.test(t)) t = Number(t);
    let d;
    if (isNum(t)) d = new Date(t > 1e14 ? t / 1000 : t > 1e11 ? t : t * 1000);
    else d = new Date(String(t));
    return Number.isNaN(d.getTime()) ? null : d;
  }
  /**
   * Every time on the dashboard is the market's, Asia/Shanghai (UTC+8, no daylight
   * saving), whatever the browser's zone: the sessions, the trading day, the deadlines
   * and the audit log are all stated in it, and a regulator in another zone comparing
   * the tape with the rules must not convert. Daily candles start at midnight Shanghai
   * (projections/market.py), so they are named by that day: in New York the 25th's
   * candle starts on the 24th. With the year: a year-old close must not look like
   * yesterday's.
   */
  const SHANGHAI = new Intl.DateTimeFormat("en-CA", {
    timeZone: "Asia/Shanghai", hourCycle: "h23",
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  const shanghai = (d) => Object.fromEntries(SHANGHAI.formatToParts(d).map((x) => [x.type, x.value]));
  const hms = (d) => { const p = shanghai(d); return `${p.hour}:${p.minute}:${p.second}`; };
  const ymd = (d) => { const p = shanghai(d); return `${p.year}-${p.month}-${p.day}`; };
  const tradingDay = ymd;
  function fmtTime(t) { const d = toDate(t); return d ? hms(d) : "—"; }
  function fmtDateTime(t) { const d = toDate(t); return d ? `${ymd(d)} ${hms(d)}` : esc(t ?? "—"); }

  /** A wall-clock time without a zone ("YYYY-MM-DDTHH:MM[:SS]", as a datetime-local input
   * gives it) read as Shanghai time → ISO 8601 with its offset, or null if it is no moment. */
  function shanghaiIso(s) {
    let local = String(s).replace(" ", "T");
    if (/T\d{2}:\d{2}$/.test(local)) local += ":00"; // a picker leaves whole minutes' seconds out
    const iso = `${local}+08:00`;
    return Number.isNaN(new Date(iso).getTime()) ? null : iso;
  }
  const byIdDesc = (key) => (a, b) =>
    String(b[key] ?? "").localeCompare(String(a[key] ?? ""), undefined, { numeric: true });
  const badge = (text) => `<span class="badge ${esc(String(text ?? "").replace(/\s+/g, "_"))}">${esc(text ?? "—")}</span>`;
  const sideCell = (side) => `<td class="${side === "buy" ? "buy" : side === "sell" ? "sell" : ""}">${esc(side ?? "—")}</td>`;

  // ---------------------------------------------------------------- API access
  class ApiError extends Error {
    constructor(status, problem) {
      super((problem && (problem.title || problem.detail)) || `HTTP ${status}`);
      this.status = status;
      this.problem = problem || {};
    }
  }

  /** fetch() wrapper: bearer token, JSON in and out; throws ApiError (status 0 = network, -1 = stale). */
  async function api(path, { method = "GET", body, headers = {} } = {}) {
    const gen = state.gen;
    const init = { method, headers: { Accept: "application/json, application/problem+json", ...headers } };
    if (state.token) init.headers.Authorization = "Bearer " + state.token;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    // A hung request must not stall the poll loop for ever.
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
    init.signal = abort.signal;
    let res;
    try {
      res = await fetch(path, init);
    } catch (_) {
      clearTimeout(timer);
      throw new ApiError(0, { title: "Network error", detail: "The server could not be reached; retrying." });
    }
    const text = await res.text().catch(() => "");
    clearTimeout(timer);
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = { detail: text.slice(0, 300) }; }
    }
    if (gen !== state.gen) throw new ApiError(-1, { title: "stale" });
    if (res.status === 401) {
      signOut("Your token was not accepted (401). Please sign in again.");
      throw new ApiError(401, data || {});
    }
    if (!res.ok) throw new ApiError(res.status, data && typeof data === "object" ? data : {});
    return { status: res.status, data: data && typeof data === "object" ? data : {} };
  }

  /** Normalise a problem+json body (or FastAPI's default {"detail": [...]}) for display. */
  function problemOf(err) {
    const p = (err && err.problem) || {};
    let errors = Array.isArray(p.errors) ? p.errors : [];
    let detail = p.detail;
    if (Array.isArray(detail)) { // FastAPI's default validation shape
      errors = errors.concat(detail.map((d) => ({
        field: Array.isArray(d.loc) ? d.loc[d.loc.length - 1] : d.loc, message: d.msg })));
      detail = "";
    }
    return {
      status: err && err.status, title: p.title || (err && err.message) || "Error",
      detail: typeof detail === "string" ? detail : detail ? JSON.stringify(detail) : "",
      reason: p.reason || "", orderId: p.order_id || "",
      errors: errors.map((e) => ({ field: String((e && e.field) ?? ""), message: String((e && e.message) ?? "") })),
    };
  }
  const ignorable = (err) => !err || err.status === -1 || err.status === 401;

  function problemHtml(err) {
    const p = problemOf(err);
    const status = p.status > 0 ? ` (${p.status})` : "";
    const reason = p.reason ? `<div>reason: <code data-testid="reject-reason">${esc(p.reason)}</code></div>` : "";
    const list = p.errors.length
      ? `<ul>${p.errors.map((e) => `<li><code>${esc(e.field)}</code>: ${esc(e.message)}</li>`).join("")}</ul>` : "";
    return `<div class="problem"><strong class="bad">${esc(p.title)}</strong>${status}` +
      `${p.detail ? ` — ${esc(p.detail)}` : ""}${reason}${list}</div>`;
  }
  /** Short text for a panel's error line (blank for errors handled elsewhere). */
  function panelError(el, err) {
    if (ignorable(err)) return;
    const p = problemOf(err);
    setText(el, p.title + (p.detail ? ": " + p.detail : ""));
  }

  /** Put each field error next to its input ([data-field=name]); the field may be a path. */
  function showFieldErrors(form, errors) {
    $$(".field-error", form).forEach((el) => setText(el, ""));
    $$(".invalid", form).forEach((el) => el.classList.remove("invalid"));
    for (const e of errors || []) {
      const name = String(e.field || "").split(/[./]/).pop();
      const slot = name && $(`.field-error[data-field="${CSS.escape(name)}"]`, form);
      if (!slot) continue;
      setText(slot, e.message);
      const input = slot.parentElement && slot.parentElement.querySelector("input, select");
      if (input) input.classList.add("invalid");
    }
  }

  // ---------------------------------------------------------------- session
  const role = () => (state.me ? state.me.role : "");
  const showsEnterprise = () => ["trader", "viewer", "regulator"].includes(role());
  const showsRegulator = () => ["regulator", "operator"].includes(role());

  async function signIn(token) {
    state.gen += 1;
    state.token = token;
    setText($("#sign-in-error"), "");
    $("#sign-in").disabled = true;
    try {
      const { data } = await api("/v1/me");
      sessionStorage.setItem(TOKEN_KEY, token);
      state.me = { role: String(data.role || "viewer"), enterprise_id: data.enterprise_id || null };
      await startApp();
    } catch (err) {
      if (!ignorable(err)) {
        state.token = null;
        setText($("#sign-in-error"), problemOf(err).title + (err.status ? "" : " — is the server running?"));
      }
    } finally {
      $("#sign-in").disabled = false;
    }
  }

  function signOut(message) {
    state.gen += 1;
    stopPolling();
    closeStream();
    clearTimeout(state.streamRetry);
    Object.assign(state, { token: null, me: null, markets: [], symbol: null, candles: [], enterpriseId: null,
      enterprises: [], period: null, ticks: 0, busy: false, streamFailures: 0, auditNext: null,
      apiPaths: null, apiPathsAt: 0, apiPathsLoading: null });
    sessionStorage.removeItem(TOKEN_KEY);
    resetViews();
    show($("#app-view"), false);
    show($("#session-bar"), false);
    show($("#signin-view"), true);
    setText($("#sign-in-error"), typeof message === "string" ? message : "");
    $("#token-input").value = "";
    $("#token-input").focus();
  }

  /** Empty every data view so another role's data never shows after a new sign-in. */
  function resetViews() {
    $$("#app-view tbody").forEach((tb) => { tb.innerHTML = ""; });
    for (const id of ["market-stats", "candles", "compliance", "evaluation", "surveillance", "verify-result",
      "asof-result", "order-result", "instrument-select", "enterprise-select", "evaluation-period", "audit-form-errors"]) {
      const el = document.getElementById(id);
      if (el) el.innerHTML = "";
    }
    $$(".panel-msg").forEach((el) => setText(el, ""));
    setText($("#whoami"), "");
    setText($("#last-update"), "—");
    $("#audit-next").disabled = true;
    lastHtml = new WeakMap();
  }

  async function startApp() {
    const me = state.me;
    show($("#signin-view"), false);
    show($("#app-view"), true);
    show($("#session-bar"), true);
    setText($("#whoami"), me.role + (me.enterprise_id ? " · " + me.enterprise_id : ""));
    $("#whoami").dataset.role = me.role;
    $("#whoami").dataset.enterpriseId = me.enterprise_id || "";

    show($("#enterprise-panel"), showsEnterprise());
    show($("#order-entry"), me.role === "trader");
    show($("#enterprise-select-wrap"), me.role === "regulator");
    show($("#regulator-panel"), showsRegulator());
    $$(".audit-only").forEach((el) => show(el, me.role === "regulator"));
    setText($("#regulator-title"), me.role === "regulator" ? "Regulator" : "Enterprises");
    state.enterpriseId = me.role === "regulator" ? sessionStorage.getItem(ENTERPRISE_KEY) : me.enterprise_id;
    setText($("#enterprise-name"), me.enterprise_id || "");

    if (showsRegulator()) await refreshEnterprises();
    if (me.role === "regulator") searchAudit(null);
    updateOrderHint();
    startPolling();
    openStream();
  }

  // ---------------------------------------------------------------- polling
  function startPolling() {
    stopPolling();
    state.timer = setInterval(() => { tick(false); }, POLL_MS);
    tick(true);
  }
  function stopPolling() { clearInterval(state.timer); state.timer = null; }

  /** One poll: market data always, enterprise data when shown; slow panels every SLOW_EVERY polls. */
  async function tick(full) {
    if (!state.me || state.busy || document.hidden) return;
    state.busy = true;
    const gen = state.gen;
    const slow = full || state.ticks % SLOW_EVERY === 0;
    state.ticks += 1;
    try {
      const jobs = [refreshMarket()];
      if (showsEnterprise()) jobs.push(refreshEnterprise(slow));
      if (showsRegulator() && slow) jobs.push(refreshRegulator());
      const results = await Promise.all(jobs);
      if (gen === state.gen && results.some(Boolean)) markUpdated();
    } catch (_) {
      // every refresh handles its own errors; nothing may escape a timer callback
    } finally {
      if (gen === state.gen) state.busy = false;
    }
  }
  function markUpdated() { setText($("#last-update"), hms(new Date())); }

  // ---------------------------------------------------------------- what the server offers
  const API_PATHS_TTL_MS = 60000; // look again now and then: a server upgrade may add endpoints
  const OPTIONAL = {
    stream: /^\/v1\/stream$/,
    compliance: /^\/v1\/enterprises\/\{[^/{}]+\}\/compliance$/,
    evaluation: /^\/v1\/enterprises\/\{[^/{}]+\}\/evaluation$/,
    fills: /^\/v1\/enterprises\/\{[^/{}]+\}\/fills$/,
  };

  /** The path templates /openapi.json lists (cached); null when the document is unavailable. */
  async function apiPaths() {
    if (state.apiPathsLoading) return state.apiPathsLoading;
    if (state.apiPathsAt && Date.now() - state.apiPathsAt < API_PATHS_TTL_MS) return state.apiPaths;
    const gen = state.gen;
    state.apiPathsLoading = (async () => {
      let paths = null;
      try {
        const res = await fetch("/openapi.json", { headers: { Accept: "application/json" } });
        const doc = res.ok ? await res.json() : null;
        if (doc && doc.paths && typeof doc.paths === "object") paths = Object.keys(doc.paths);
      } catch (_) {
        paths = null;
      }
      if (gen === state.gen) Object.assign(state, { apiPaths: paths, apiPathsAt: Date.now() });
      return paths;
    })();
    try {
      return await state.apiPathsLoading;
    } finally {
      state.apiPathsLoading = null;
    }
  }

  /**
   * Whether the server offers an optional endpoint (OPTIONAL key). Asking for an endpoint the
   * server lacks would 404, which the browser logs as a console error: only call what is listed.
   * `unknown` is the answer when /openapi.json cannot be read.
   */
  async function offers(name, unknown = false) {
    const paths = await apiPaths();
    if (!paths) return unknown;
    return paths.some((p) => OPTIONAL[name].test(p));
  }

  // ---------------------------------------------------------------- server-sent events
  /** Open /v1/stream only when the OpenAPI document lists it (or cannot be read). */
  const streamAvailable = () => offers("stream", true);

  async function openStream() {
    closeStream();
    const gen = state.gen;
    if (typeof EventSource !== "function" || !state.token) return;
    if (!(await streamAvailable()) || gen !== state.gen || !state.token) return;
    let es;
    try {
      es = new EventSource("/v1/stream?access_token=" + encodeURIComponent(state.token));
    } catch (_) {
      return; // polling carries on
    }
    state.stream = es;
    es.onopen = () => { state.streamFailures = 0; setLive(true); };
    es.onerror = () => {
      // Keep polling; try the stream again later, a few times at most.
      closeStream();
      if (gen === state.gen && state.me && state.streamFailures++ < 5) {
        state.streamRetry = setTimeout(openStream, 15000 * state.streamFailures);
      }
    };
    for (const name of ["trade", "book", "order"]) {
      es.addEventListener(name, (ev) => onStreamEvent(name, ev));
    }
  }
  function closeStream() {
    if (state.stream) {
      try { state.stream.close(); } catch (_) { /* already closed */ }
    }
    state.stream = null;
    setLive(false);
  }
  function setLive(on) {
    const el = $("#live-status");
    el.classList.toggle("on", on);
    setText(el, on ? "live" : "polling");
  }

  /** Coalesce bursts of events into one refresh of the affected panels. */
  function onStreamEvent(name, ev) {
    let data = null;
    try { data = JSON.parse(ev.data); } catch (_) { /* not JSON: refresh anyway */ }
    const symbol = data && (data.symbol || data.instrument);
    if ((name === "trade" || name === "book") && symbol && symbol !== state.symbol) {
      if (name === "trade") state.pending.add("markets");
    } else {
      state.pending.add(name);
    }
    if (!state.pendingTimer) state.pendingTimer = setTimeout(runPending, 150);
  }
  async function runPending() {
    state.pendingTimer = null;
    const p = state.pending;
    state.pending = new Set();
    if (!state.me) return;
    const jobs = [];
    if (p.has("trade")) jobs.push(refreshMarketsList(), refreshTape(), refreshCandles(), refreshBook());
    else if (p.has("book")) jobs.push(refreshBook());
    if (p.has("markets") && !p.has("trade")) jobs.push(refreshMarketsList());
    if ((p.has("order") || p.has("trade")) && showsEnterprise() && state.enterpriseId) {
      jobs.push(refreshBalances(state.enterpriseId), refreshOrders(state.enterpriseId));
    }
    const results = await Promise.all(jobs);
    if (results.some(Boolean)) markUpdated();
  }

  // ---------------------------------------------------------------- market panel
  const currentMarket = () => state.markets.find((m) => m.symbol === state.symbol) || null;

  async function refreshMarket() {
    const ok = await refreshMarketsList();
    if (!state.symbol) return ok;
    const parts = await Promise.all([refreshBook(), refreshTape(), refreshCandles()]);
    return ok && parts.every(Boolean);
  }

  async function refreshMarketsList() {
    try {
      const { data } = await api("/v1/markets");
      state.markets = Array.isArray(data.markets) ? data.markets.filter((m) => m && m.symbol) : [];
      if (!currentMarket()) {
        const saved = sessionStorage.getItem(SYMBOL_KEY);
        const pick = state.markets.find((m) => m.symbol === saved) || state.markets[0];
        state.symbol = pick ? pick.symbol : null;
      }
      renderInstrumentSelect();
      renderStats();
      setText($("#market-error"), state.markets.length ? "" : "No instrument is listed yet.");
      return true;
    } catch (err) {
      panelError($("#market-error"), err);
      return false;
    }
  }

  function renderInstrumentSelect() {
    const sel = $("#instrument-select");
    setHtml(sel, state.markets.map((m) =>
      `<option value="${esc(m.symbol)}">${esc(m.symbol)}${m.vintage ? ` (vintage ${esc(m.vintage)})` : ""}</option>`).join(""));
    if (state.symbol) sel.value = state.symbol;
    setText($("#order-instrument"), state.symbol ? "· " + state.symbol : "");
  }

  function renderStats() {
    const m = currentMarket();
    if (!m) { setHtml($("#market-stats"), ""); return; }
    let change = "—";
    let cls = "";
    if (isNum(m.last) && isNum(m.prev_close) && m.prev_close > 0) {
      const bps = Math.round(((m.last - m.prev_close) * 10000) / m.prev_close);
      change = (bps > 0 ? "+" : "") + fmtPct(bps);
      cls = bps > 0 ? "buy" : bps < 0 ? "sell" : "";
    }
    const band = m.band_low === null && m.band_high === null ? "—" : `${fmtFen(m.band_low)} – ${fmtFen(m.band_high)}`;
    const items = [
      ["Last", fmtFen(m.last), "last", cls], ["Change", change, "change", cls], ["Open", fmtFen(m.open), "open"],
      ["High", fmtFen(m.high), "high"], ["Low", fmtFen(m.low), "low"], ["Prev close", fmtFen(m.prev_close), "prev-close"],
      ["Volume (t)", fmtQty(m.volume), "volume"], ["Band", band, "band"],
      ["Ref. price", fmtFen(m.reference_price), "reference-price"], ["Fee", m.fee_bps === null || m.fee_bps === undefined ? "—" : `${fmtQty(m.fee_bps)} bps`, "fee"],
    ];
    setHtml($("#market-stats"), items.map(([label, value, id, c]) =>
      `<div><dt>${label}</dt><dd class="${c || ""}" data-testid="stat-${id}">${value}</dd></div>`).join(""));
  }

  /** Accept [price, qty, orders] triples (the contract) or {price, quantity, orders} objects. */
  function levels(list) {
    if (!Array.isArray(list)) return [];
    return list.map((l) => (Array.isArray(l) ? l : l && [l.price, l.quantity, l.orders]))
      .filter((l) => l && isNum(l[0]) && isNum(l[1]));
  }

  async function refreshBook() {
    const symbol = state.symbol;
    if (!symbol) return false;
    try {
      const { data } = await api(`/v1/markets/${encodeURIComponent(symbol)}/book?depth=10`);
      if (symbol === state.symbol) renderBook(data);
      return true;
    } catch (err) {
      panelError($("#market-error"), err);
      return false;
    }
  }

  function renderBook(data) {
    const bids = levels(data.bids);
    const asks = levels(data.asks);
    const maxQ = Math.max(1, ...bids.map((l) => l[1]), ...asks.map((l) => l[1]));
    const depth = (q) => Math.max(2, Math.round((q / maxQ) * 100));
    setHtml($("#book-bids tbody"), bids.map(([p, q, o]) =>
      `<tr data-price="${p}" data-quantity="${q}" data-side="buy" style="--depth:${depth(q)}%">` +
      `<td>${fmtQty(o ?? "")}</td><td>${fmtQty(q)}</td><td class="px">${fmtFen(p)}</td></tr>`).join(""));
    setHtml($("#book-asks tbody"), asks.map(([p, q, o]) =>
      `<tr data-price="${p}" data-quantity="${q}" data-side="sell" style="--depth:${depth(q)}%">` +
      `<td class="px">${fmtFen(p)}</td><td>${fmtQty(q)}</td><td>${fmtQty(o ?? "")}</td></tr>`).join(""));
    show($("#book-bids-empty"), !bids.length);
    show($("#book-asks-empty"), !asks.length);
    setText($("#book-spread"), bids.length && asks.length ? `spread ${fmtFen(asks[0][0] - bids[0][0])}` : "");
  }

  async function refreshTape() {
    const symbol = state.symbol;
    if (!symbol) return false;
    try {
      const { data } = await api(`/v1/markets/${encodeURIComponent(symbol)}/trades?limit=50`);
      if (symbol === state.symbol) renderTape(Array.isArray(data.trades) ? data.trades : []);
      return true;
    } catch (err) {
      panelError($("#market-error"), err);
      return false;
    }
  }

  function renderTape(trades) {
    const rows = trades.filter(Boolean).slice(0, 50).map((t) => {
      const side = t.aggressor === "buy" ? "buy" : t.aggressor === "sell" ? "sell" : "";
      return `<tr data-trade-id="${esc(t.trade_id)}" data-price="${esc(t.price)}" data-quantity="${esc(t.quantity)}">` +
        `<td>${fmtTime(t.time)}</td><td class="num ${side}">${fmtFen(t.price)}</td>` +
        `<td class="num">${fmtQty(t.quantity)}</td><td class="${side}">${esc(t.aggressor ?? "")}</td></tr>`;
    });
    setHtml($("#tape tbody"), rows.join("") || `<tr class="empty"><td colspan="4">no trades yet</td></tr>`);
  }

  async function refreshCandles() {
    const symbol = state.symbol;
    const interval = state.interval;
    if (!symbol) return false;
    try {
      const { data } = await api(`/v1/markets/${encodeURIComponent(symbol)}/candles?interval=${interval}`);
      if (symbol !== state.symbol || interval !== state.interval) return true;
      state.candles = (Array.isArray(data.candles) ? data.candles : [])
        .filter((c) => c && [c.open, c.high, c.low, c.close].every(isNum));
      renderCandles();
      return true;
    } catch (err) {
      panelError($("#market-error"), err);
      return false;
    }
  }

  /** A "nice" grid step (1, 2 or 5 × 10^k fen) for roughly `target` intervals over `range`. */
  function niceStep(range, target) {
    const raw = Math.max(1, range / target);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / mag;
    return Math.max(1, (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag);
  }

  /** Candlestick chart with volume bars, drawn as inline SVG sized to its box. */
  function renderCandles() {
    const svg = $("#candles");
    const box = svg.getBoundingClientRect();
    const W = Math.max(320, Math.round(box.width || 640));
    const H = Math.max(200, Math.round(box.height || 320));
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.dataset.count = String(state.candles.length);
    if (!state.candles.length) {
      setHtml(svg, `<text x="${W / 2}" y="${H / 2}" text-anchor="middle">no trades yet for ${esc(state.interval)} candles</text>`);
      return;
    }
    const padL = 6, padR = 62, padT = 10, padB = 22, gap = 8;
    const plotW = W - padL - padR;
    const volH = Math.round((H - padT - padB) * 0.22);
    const priceH = H - padT - padB - volH - gap;
    const maxN = Math.max(1, Math.floor(plotW / 5));
    const cs = state.candles.slice(-maxN);
    const slot = Math.min(18, plotW / cs.length);
    const bodyW = Math.max(1, slot * 0.65);
    let lo = Math.min(...cs.map((c) => c.low));
    let hi = Math.max(...cs.map((c) => c.high));
    if (hi - lo < 10) { lo -= 10; hi += 10; }
    const margin = (hi - lo) * 0.06;
    lo -= margin; hi += margin;
    const y = (p) => padT + ((hi - p) / (hi - lo)) * priceH;
    const maxV = Math.max(1, ...cs.map((c) => (isNum(c.volume) ? c.volume : 0)));
    const volTop = padT + priceH + gap;
    const x = (i) => padL + plotW - (cs.length - i) * slot + slot / 2;
    const out = [];

    const last = cs[cs.length - 1].close;
    const step = niceStep(hi - lo, 5); // horizontal grid and price labels (none where the last-price tag sits)
    for (let p = Math.ceil(lo / step) * step; p <= hi; p += step) {
      const yy = y(p).toFixed(1);
      out.push(`<line class="grid" x1="${padL}" x2="${padL + plotW}" y1="${yy}" y2="${yy}"/>`);
      if (Math.abs(y(p) - y(last)) > 13) out.push(`<text x="${W - padR + 6}" y="${(+yy + 4).toFixed(1)}">${fmtFen(p)}</text>`);
    }
    out.push(`<line class="grid" x1="${padL}" x2="${padL + plotW}" y1="${volTop + volH}" y2="${volTop + volH}"/>`);

    const every = Math.max(1, Math.ceil(76 / slot)); // time labels (≤ 10 characters) at least 76 px apart
    cs.forEach((c, i) => {
      const up = c.close >= c.open;
      const cx = x(i).toFixed(1);
      const top = y(Math.max(c.open, c.close));
      const bodyH = Math.max(1, Math.abs(y(c.open) - y(c.close)));
      const vol = isNum(c.volume) ? c.volume : 0;
      const vh = (vol / maxV) * volH;
      const d = toDate(c.start);
      const label = d ? (state.interval === "1d" ? tradingDay(d) : `${ymd(d)} ${hms(d).slice(0, 5)}`) : "";
      out.push(`<g class="${up ? "up" : "down"}"><title>${esc(label)}  O ${fmtFen(c.open)}  H ${fmtFen(c.high)}  ` +
        `L ${fmtFen(c.low)}  C ${fmtFen(c.close)}  V ${fmtQty(vol)} t</title>` +
        `<line x1="${cx}" x2="${cx}" y1="${y(c.high).toFixed(1)}" y2="${y(c.low).toFixed(1)}"/>` +
        `<rect x="${(x(i) - bodyW / 2).toFixed(1)}" y="${top.toFixed(1)}" width="${bodyW.toFixed(1)}" height="${bodyH.toFixed(1)}"/>` +
        `<rect opacity="0.45" x="${(x(i) - bodyW / 2).toFixed(1)}" y="${(volTop + volH - vh).toFixed(1)}" ` +
        `width="${bodyW.toFixed(1)}" height="${vh.toFixed(1)}"/></g>`);
      if (d && (cs.length - 1 - i) % every === 0) {
        const text = state.interval === "1d" ? tradingDay(d) : hms(d).slice(0, 5);
        out.push(`<text class="axis" x="${cx}" y="${H - 6}" text-anchor="middle">${text}</text>`);
      }
    });
    // dashed line and tag at the last close
    out.push(`<line class="last" x1="${padL}" x2="${padL + plotW}" y1="${y(last).toFixed(1)}" y2="${y(last).toFixed(1)}"/>`,
      `<text x="${W - padR + 6}" y="${(y(last) + 4).toFixed(1)}" style="fill:var(--accent);font-weight:600">${fmtFen(last)}</text>`,
      `<text x="${padL + 2}" y="${volTop + 10}">vol</text>`);
    setHtml(svg, out.join(""));
  }

  // ---------------------------------------------------------------- enterprise panel
  async function refreshEnterprise(slow) {
    const id = state.enterpriseId;
    if (!id) {
      setText($("#enterprise-error"), role() === "regulator" ? "Choose an enterprise." : "");
      return false;
    }
    const jobs = [refreshBalances(id), refreshOrders(id)];
    if (slow) jobs.push(refreshCompliance(id));
    const results = await Promise.all(jobs);
    return results.every(Boolean);
  }

  async function refreshBalances(id) {
    try {
      const { data } = await api(`/v1/enterprises/${encodeURIComponent(id)}/balances`);
      if (id === state.enterpriseId) renderBalances(data);
      setText($("#enterprise-error"), "");
      return true;
    } catch (err) {
      panelError($("#enterprise-error"), err);
      return false;
    }
  }

  function renderBalances(data) {
    const cash = data.cash || {};
    const credits = data.credits && typeof data.credits === "object" ? data.credits : {};
    const cell = (testid, value, text) =>
      `<td class="num" data-testid="${esc(testid)}" data-value="${esc(value ?? "")}">${text}</td>`;
    const rows = [`<tr><td>Cash (CNY)</td>${cell("cash-available", cash.available, fmtFen(cash.available))}` +
      `${cell("cash-held", cash.held, fmtFen(cash.held))}</tr>`];
    for (const sym of Object.keys(credits).sort()) {
      const c = credits[sym] || {};
      rows.push(`<tr><td>${esc(sym)} (t)</td>${cell("credits-available-" + sym, c.available, fmtQty(c.available))}` +
        `${cell("credits-held-" + sym, c.held, fmtQty(c.held))}</tr>`);
    }
    if (!Object.keys(credits).length) rows.push(`<tr class="empty"><td colspan="3">no credits held</td></tr>`);
    setHtml($("#balances tbody"), rows.join(""));
  }

  /**
   * Open orders, recent orders and fills. Fills come from /v1/enterprises/{id}/fills: the
   * orders list is one page (the newest 200 orders), so fills read from it vanish once an
   * enterprise has placed 200 newer orders, rejected or cancelled ones included. A server
   * without that endpoint gets the old way (fills of the orders on the page).
   */
  async function refreshOrders(id) {
    const q = encodeURIComponent(id);
    try {
      const [open, all, fills] = await Promise.all([
        api(`/v1/orders?enterprise_id=${q}&status=open`), api(`/v1/orders?enterprise_id=${q}`),
        offers("fills").then((yes) => (yes ? api(`/v1/enterprises/${q}/fills?limit=100`) : null))]);
      if (id !== state.enterpriseId) return true;
      // One map by order id; the unfiltered list wins when both mention an order.
      const byId = new Map();
      for (const o of [...listOf(open.data.orders), ...listOf(all.data.orders)]) byId.set(o.order_id, o);
      const orders = Array.from(byId.values()).sort(byIdDesc("order_id"));
      renderOpenOrders(orders.filter((o) => OPEN_STATES.has(o.status)));
      renderOrders(listOf(all.data.orders).sort(byIdDesc("order_id")));
      renderFills(fills ? (Array.isArray(fills.data.fills) ? fills.data.fills.filter(Boolean) : []) : fillsOfOrders(orders));
      setText($("#orders-error"), "");
      return true;
    } catch (err) {
      panelError($("#orders-error"), err);
      return false;
    }
  }
  const listOf = (v) => (Array.isArray(v) ? v.filter((o) => o && o.order_id !== undefined) : []);
  /**
   * A limit order's price; for a market order "market" (its `price` is the band collar the
   * engine swept to, not a price anyone asked for) and, once it traded, its average fill price.
   */
  function priceCell(o) {
    if (o.type !== "market") return `<td class="num">${fmtFen(o.price)}</td>`;
    const fills = Array.isArray(o.fills) ? o.fills.filter((f) => f && isNum(f.price) && isNum(f.quantity)) : [];
    const qty = fills.reduce((n, f) => n + f.quantity, 0);
    const avg = qty > 0 ? Math.round(fills.reduce((n, f) => n + f.price * f.quantity, 0) / qty) : null;
    return `<td class="num" data-market="true">market${avg === null ? ""
      : ` <span class="muted small" title="average fill price">avg ${fmtFen(avg)}</span>`}</td>`;
  }
  const instrumentCell = (o) => `<td class="mono small">${esc(o.instrument ?? "")}</td>`;

  function renderOpenOrders(orders) {
    const canCancel = role() === "trader";
    const rows = orders.map((o) =>
      `<tr data-order-id="${esc(o.order_id)}" data-status="${esc(o.status)}"><td class="mono">${esc(o.order_id)}</td>` +
      `${instrumentCell(o)}${sideCell(o.side)}<td>${esc(o.type)}</td>${priceCell(o)}<td class="num">${fmtQty(o.quantity)}</td>` +
      `<td class="num">${fmtQty(o.filled_quantity)}</td><td class="num">${fmtQty(o.remaining_quantity)}</td>` +
      `<td>${esc(o.time_in_force ?? "")}</td><td>${badge(o.status)}</td><td>${canCancel
        ? `<button type="button" class="btn small danger cancel" data-order-id="${esc(o.order_id)}">Cancel</button>` : ""}</td></tr>`);
    setHtml($("#open-orders tbody"), rows.join("") || `<tr class="empty"><td colspan="11">no open orders</td></tr>`);
  }

  function renderOrders(orders) {
    const rows = orders.slice(0, 100).map((o) =>
      `<tr data-order-id="${esc(o.order_id)}" data-status="${esc(o.status)}"><td class="mono">${esc(o.order_id)}</td>` +
      `<td class="mono">${esc(o.client_order_id ?? "")}</td>${instrumentCell(o)}${sideCell(o.side)}<td>${esc(o.type)}</td>${priceCell(o)}` +
      `<td class="num">${fmtQty(o.quantity)}</td><td class="num">${fmtQty(o.filled_quantity)}</td>` +
      `<td>${esc(o.time_in_force ?? "")}</td><td>${badge(o.status)}</td><td>${esc(o.reject_reason ?? "")}</td></tr>`);
    setHtml($("#orders tbody"), rows.join("") || `<tr class="empty"><td colspan="11">no orders yet</td></tr>`);
  }

  /** Fills in the shape of /v1/enterprises/{id}/fills, from the fills inside orders. */
  function fillsOfOrders(orders) {
    const fills = [];
    for (const o of orders) {
      for (const f of Array.isArray(o.fills) ? o.fills : []) {
        if (f) fills.push({ ...f, order_id: o.order_id, side: o.side, instrument: o.instrument, role: f.counterparty_side });
      }
    }
    return fills;
  }

  function renderFills(fills) {
    fills = fills.slice().sort(byIdDesc("trade_id"));
    const rows = fills.slice(0, 100).map((f) =>
      `<tr data-trade-id="${esc(f.trade_id)}" data-order-id="${esc(f.order_id)}"><td class="mono">${esc(f.trade_id)}</td>` +
      `<td class="mono">${esc(f.order_id)}</td>${instrumentCell(f)}${sideCell(f.side)}<td class="num">${fmtFen(f.price)}</td>` +
      `<td class="num">${fmtQty(f.quantity)}</td><td class="num">${fmtFen(f.fee)}</td><td>${esc(f.role ?? f.counterparty_side ?? "")}</td></tr>`);
    setHtml($("#fills tbody"), rows.join("") || `<tr class="empty"><td colspan="8">no fills yet</td></tr>`);
  }

  async function cancelOrder(orderId, button) {
    button.disabled = true;
    try {
      await api(`/v1/orders/${encodeURIComponent(orderId)}`, { method: "DELETE" });
      setHtml($("#order-result"), `<span class="ok">Cancel requested for ${esc(orderId)}.</span>`);
    } catch (err) {
      if (!ignorable(err)) setHtml($("#order-result"), problemHtml(err));
    } finally {
      button.disabled = false;
    }
    if (state.enterpriseId) await Promise.all([refreshOrders(state.enterpriseId), refreshBalances(state.enterpriseId), refreshBook()]);
  }

  // --- order entry
  function newClientOrderId() {
    const bytes = new Uint8Array(6);
    crypto.getRandomValues(bytes);
    return "web-" + Date.now().toString(36) + "-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function updateOrderHint() {
    const market = $("#order-type").value === "market";
    $("#order-price").disabled = market;
    $("#order-post-only").disabled = market;
    if (market) $("#order-post-only").checked = false;
    const m = currentMarket();
    setText($("#order-hint"), m && (isNum(m.band_low) || isNum(m.band_high))
      ? `Price band ${fmtFen(m.band_low)} – ${fmtFen(m.band_high)} CNY/t · fee ${fmtQty(m.fee_bps ?? 0)} bps` : "");
  }

  /** Validate locally, then POST /v1/orders with the client order id as the idempotency key. */
  async function submitOrder(ev) {
    ev.preventDefault();
    const form = $("#order-form");
    const type = $("#order-type").value;
    const qtyText = $("#order-quantity").value.trim().replace(/,/g, "");
    const errors = [];
    const quantity = /^\d+$/.test(qtyText) ? Number(qtyText) : NaN;
    if (!Number.isSafeInteger(quantity) || quantity <= 0) errors.push({ field: "quantity", message: "whole tonnes, at least 1" });
    let price = null;
    if (type === "limit") {
      price = parseFen($("#order-price").value);
      if (price === null || price <= 0) errors.push({ field: "price", message: "CNY per tonne with at most 2 decimals, e.g. 60.00" });
    }
    if (!state.symbol) errors.push({ field: "instrument", message: "no instrument selected" });
    showFieldErrors(form, errors);
    if (errors.length) {
      setHtml($("#order-result"), problemHtml(new ApiError(0, { title: "Check the order", errors })));
      return;
    }
    const clientOrderId = newClientOrderId();
    const body = {
      client_order_id: clientOrderId, enterprise_id: state.enterpriseId, instrument: state.symbol,
      side: $("#order-side").value, type, quantity, time_in_force: $("#order-tif").value,
      post_only: type === "limit" && $("#order-post-only").checked,
    };
    if (type === "limit") body.price = price;
    $("#order-submit").disabled = true;
    setHtml($("#order-result"), `<span class="muted">Sending…</span>`);
    try {
      const { data } = await api("/v1/orders", { method: "POST", body, headers: { "Idempotency-Key": clientOrderId } });
      setHtml($("#order-result"), orderResultHtml(data));
    } catch (err) {
      if (!ignorable(err)) {
        showFieldErrors(form, problemOf(err).errors);
        const id = problemOf(err).orderId;
        setHtml($("#order-result"), problemHtml(err) + (id ? `<div class="muted">order ${esc(id)}</div>` : ""));
      }
    } finally {
      $("#order-submit").disabled = false;
    }
    if (state.me && state.enterpriseId) {
      const results = await Promise.all([refreshOrders(state.enterpriseId), refreshBalances(state.enterpriseId), refreshMarket()]);
      if (results.some(Boolean)) markUpdated();
    }
  }

  function orderResultHtml(o) {
    const fills = Array.isArray(o.fills) ? o.fills : [];
    const list = fills.length ? `<ul>${fills.map((f) =>
      `<li>${fmtQty(f.quantity)} t @ ${fmtFen(f.price)} (fee ${fmtFen(f.fee)}, ${esc(f.counterparty_side ?? "")}) · ${esc(f.trade_id)}</li>`).join("")}</ul>` : "";
    const filled = isNum(o.filled_quantity) ? ` — filled ${fmtQty(o.filled_quantity)}${isNum(o.quantity) ? " of " + fmtQty(o.quantity) : ""} t` : "";
    return `<div data-order-id="${esc(o.order_id)}" data-status="${esc(o.status)}"><span class="ok">Order ${esc(o.order_id ?? "")}</span> ` +
      `<span data-testid="order-status">${badge(o.status ?? "accepted")}</span>${filled}` +
      `${o.reject_reason ? ` · reason <code>${esc(o.reject_reason)}</code>` : ""}${list}</div>`;
  }

  // --- compliance and evaluation
  /**
   * The compliance table's columns: [key, heading, cell]. The API reports emissions and
   * quota in kilograms (decimal strings) and penalties in fen; the page shows tonnes and
   * CNY. A few main columns keep Status in view in a narrow card; every other field is in
   * the period's details row.
   */
  const signedT = (v) => (isNum(v) ? (v > 0 ? "+" : "") + fmtQty(v) : "—");
  const COMPLIANCE_COLS = [
    ["period", "Period", (p) => `<td>${esc(p.period)}</td>`],
    ["status", "Status", (p) => `<td data-testid="compliance-status">${badge(p.status)}</td>`],
    ["verified_emissions_kg", "Verified (t)", (p) => `<td class="num" data-testid="compliance-verified">${fmtKgAsT(p.verified_emissions_kg)}</td>`],
    ["quota_kg", "Quota (t)", (p) => `<td class="num" data-testid="compliance-quota">${fmtKgAsT(p.quota_kg)}</td>`],
    ["balance_t", "Balance (t)", (p) => `<td class="num" title="quota − verified, after deductions">${signedT(p.balance_t)}</td>`],
    ["penalty_fen", "Penalty (CNY)", (p) => `<td class="num" data-testid="compliance-penalty">${fmtFen(p.penalty_fen)}</td>`],
  ];
  /** Labels (and units) of the fields in a period's details; any other field shows as sent. */
  const COMPLIANCE_DETAILS = [
    ["method", "Allocation method", (v) => esc(v ?? "—")], ["surplus_t", "Surplus (t)", fmtQty], ["deficit_t", "Deficit (t)", fmtQty],
    ["issued_t", "Surplus issued (t)", fmtQty], ["deduction_t", "Deduction (t)", fmtQty], ["obligation_t", "Obligation (t)", fmtQty],
    ["surrendered_t", "Surrendered (t)", fmtQty], ["outstanding_t", "Outstanding (t)", fmtQty], ["shortfall_t", "Shortfall (t)", fmtQty],
    ["penalty_unpaid_fen", "Penalty unpaid (CNY)", fmtFen],
  ];

  function complianceDetails(p) {
    const shown = new Set([...COMPLIANCE_COLS.map((c) => c[0]), ...COMPLIANCE_DETAILS.map((c) => c[0]), "enterprise_id", "quota_inputs"]);
    const kv = COMPLIANCE_DETAILS.filter(([k]) => k in p).map(([k, label, fmt]) => [label, fmt(p[k])]);
    for (const [k, v] of Object.entries(p)) {
      if (shown.has(k) || (v !== null && typeof v === "object")) continue;
      kv.push([k.replace(/_/g, " "), /_kg$/.test(k) ? fmtKgAsT(v) : /_fen$/.test(k) ? fmtFen(v) : fmtDec(v)]);
    }
    if (p.quota_inputs && typeof p.quota_inputs === "object") {
      for (const [k, v] of flatten(p.quota_inputs)) kv.push([`quota input: ${k.replace(/_/g, " ")}`, fmtDec(v)]);
    }
    return `<details><summary>details</summary><dl class="kv">${kv.map(([k, v]) =>
      `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("")}</dl></details>`;
  }

  async function refreshCompliance(id) {
    let periods = [];
    if (!(await offers("compliance"))) {
      if (id !== state.enterpriseId) return true;
      setHtml($("#compliance"), `<p class="muted" data-testid="compliance-unavailable">not offered by this server yet</p>`);
      show($("#evaluation-period"), false);
      state.period = null;
      return refreshEvaluation(id);
    }
    try {
      const { data } = await api(`/v1/enterprises/${encodeURIComponent(id)}/compliance`);
      periods = Array.isArray(data.periods) ? data.periods.filter((p) => p && p.period !== undefined) : [];
    } catch (err) {
      if (err.status !== 404) {
        if (!ignorable(err)) setHtml($("#compliance"), problemHtml(err));
        return false;
      }
    }
    if (id !== state.enterpriseId) return true;
    if (!periods.length) {
      setHtml($("#compliance"), `<p class="muted">none yet</p>`);
    } else {
      const cols = COMPLIANCE_COLS;
      setHtml($("#compliance"), `<table class="grid-table compliance"><thead><tr>${cols.map(([k, h]) =>
        `<th class="${k === "period" || k === "status" ? "" : "num"}">${esc(h)}</th>`).join("")}</tr></thead><tbody>` +
        periods.map((p) => `<tr data-period="${esc(p.period)}">${cols.map(([, , cell]) => cell(p)).join("")}</tr>` +
          `<tr class="details" data-period-details="${esc(p.period)}"><td colspan="${cols.length}">${complianceDetails(p)}</td></tr>`).join("") +
        `</tbody></table>`);
    }
    // The evaluation period selector follows the compliance periods (latest by default).
    const names = periods.map((p) => String(p.period));
    const sel = $("#evaluation-period");
    setHtml(sel, names.map((n) => `<option value="${esc(n)}">${esc(n)}</option>`).join(""));
    show(sel, names.length > 0);
    if (!names.includes(state.period)) state.period = names.length ? names.slice().sort().pop() : null;
    if (state.period) sel.value = state.period;
    return refreshEvaluation(id);
  }

  async function refreshEvaluation(id) {
    const period = state.period;
    if (!(await offers("evaluation"))) {
      if (id === state.enterpriseId) {
        setHtml($("#evaluation"), `<p class="muted" data-testid="evaluation-unavailable">not offered by this server yet</p>`);
      }
      return true;
    }
    if (!period) { setHtml($("#evaluation"), `<p class="muted">none yet</p>`); return true; }
    try {
      const { data } = await api(`/v1/enterprises/${encodeURIComponent(id)}/evaluation?period=${encodeURIComponent(period)}`);
      if (id === state.enterpriseId && period === state.period) renderEvaluation(data);
      return true;
    } catch (err) {
      if (err.status === 404) { setHtml($("#evaluation"), `<p class="muted">none yet</p>`); return true; }
      if (!ignorable(err)) setHtml($("#evaluation"), problemHtml(err));
      return false;
    }
  }

  /** Flatten nested inputs to dotted keys so every input shows on its own line. */
  function flatten(obj, prefix = "", out = []) {
    for (const [k, v] of Object.entries(obj || {})) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (v && typeof v === "object" && !Array.isArray(v) && out.length < 200) flatten(v, key, out);
      else out.push([key, v]);
    }
    return out;
  }

  function renderEvaluation(ev) {
    if (!ev || !ev.scores) { setHtml($("#evaluation"), `<p class="muted">none yet</p>`); return; }
    const scores = ["economy", "energy", "pollution", "carbon"].map((k) => {
      const v = Number(ev.scores[k]);
      const w = Number.isFinite(v) ? Math.max(0, Math.min(100, v)) : 0;
      return `<div class="score" data-testid="score-${k}"><span>${k}</span><span class="bar"><span style="width:${w}%"></span></span>` +
        `<span class="num">${fmtDec(ev.scores[k])}</span></div>`;
    }).join("");
    // The evaluation writes "undefined" for a ratio it cannot form (no previous period to
    // grow from, no output to divide by) and "none" for a figure it lacks: a dash here.
    const shown = (v) => (v === "undefined" || v === "none" ? "— (none)" : fmtDec(v));
    const inputs = flatten(ev.inputs).map(([k, v]) =>
      `<dt>${esc(k)}</dt><dd>${Array.isArray(v) ? esc(JSON.stringify(v)) : shown(v)}</dd>`).join("");
    setHtml($("#evaluation"),
      `<div class="card-head"><span>Period ${esc(ev.period ?? state.period)} · total <strong data-testid="evaluation-total">${fmtDec(ev.total)}</strong></span>` +
      `<span><span class="badge ${esc(ev.grade)} grade" data-testid="evaluation-grade">${esc(ev.grade ?? "—")}</span>` +
      `${ev.near_zero_carbon ? ` <span class="badge ok">near-zero carbon</span>` : ""}</span></div>` +
      `<div class="scores">${scores}</div>${inputs ? `<div class="section-title">Inputs</div><dl class="kv">${inputs}</dl>` : ""}`);
  }

  // ---------------------------------------------------------------- regulator panel
  async function refreshRegulator() {
    const jobs = [refreshEnterprises()];
    if (role() === "regulator") jobs.push(refreshSurveillance());
    const results = await Promise.all(jobs);
    return results.every(Boolean);
  }

  async function refreshEnterprises() {
    try {
      const { data } = await api("/v1/enterprises");
      state.enterprises = Array.isArray(data.enterprises) ? data.enterprises.filter((e) => e && e.enterprise_id) : [];
      renderEnterprises();
      if (role() === "regulator") renderEnterpriseSelect();
      setText($("#regulator-error"), "");
      return true;
    } catch (err) {
      panelError($("#regulator-error"), err);
      return false;
    }
  }

  function renderEnterprises() {
    const isReg = role() === "regulator";
    const actions = { pending: ["approve", "Approve", "ok"], active: ["suspend", "Suspend", "danger"], suspended: ["reinstate", "Reinstate", "ok"] };
    const rows = state.enterprises.map((e) => {
      const a = actions[e.status];
      const buttons = isReg ? (a ? `<button type="button" class="btn small ${a[2]} ${a[0]}" data-action="${a[0]}" ` +
        `data-enterprise-id="${esc(e.enterprise_id)}">${a[1]}</button> ` : "") +
        `<button type="button" class="btn small view" data-enterprise-id="${esc(e.enterprise_id)}">View</button>` : "";
      return `<tr data-enterprise-id="${esc(e.enterprise_id)}" data-status="${esc(e.status)}"><td class="mono">${esc(e.enterprise_id)}</td>` +
        `<td>${esc(e.name ?? "")}</td><td>${esc(e.sector ?? "")}</td><td class="mono">${esc(e.credit_code ?? "")}</td>` +
        `<td>${badge(e.status)}</td><td>${e.frozen ? badge("frozen") : "no"}</td><td>${buttons}</td></tr>`;
    });
    setHtml($("#enterprises tbody"), rows.join("") || `<tr class="empty"><td colspan="7">no enterprises registered</td></tr>`);
  }

  function renderEnterpriseSelect() {
    const sel = $("#enterprise-select");
    setHtml(sel, state.enterprises.map((e) =>
      `<option value="${esc(e.enterprise_id)}">${esc(e.enterprise_id)} — ${esc(e.name ?? "")}</option>`).join(""));
    if (!state.enterprises.some((e) => e.enterprise_id === state.enterpriseId)) {
      const first = state.enterprises.find((e) => e.status === "active") || state.enterprises[0];
      if (first) selectEnterprise(first.enterprise_id);
    }
    if (state.enterpriseId) sel.value = state.enterpriseId;
    const cur = state.enterprises.find((e) => e.enterprise_id === state.enterpriseId);
    setText($("#enterprise-name"), cur ? `${cur.enterprise_id} · ${cur.name || ""}` : "");
  }

  /** Regulator: show another enterprise in the enterprise panel. */
  function selectEnterprise(id) {
    if (!id || id === state.enterpriseId) return;
    state.enterpriseId = id;
    state.period = null;
    sessionStorage.setItem(ENTERPRISE_KEY, id);
    $("#enterprise-select").value = id;
    for (const sel of ["#balances tbody", "#open-orders tbody", "#orders tbody", "#fills tbody", "#compliance", "#evaluation"]) setHtml($(sel), "");
    const cur = state.enterprises.find((e) => e.enterprise_id === id);
    setText($("#enterprise-name"), cur ? `${cur.enterprise_id} · ${cur.name || ""}` : id);
    refreshEnterprise(true).then((ok) => { if (ok) markUpdated(); });
  }

  async function enterpriseAction(id, action, button) {
    button.disabled = true;
    try {
      await api(`/v1/enterprises/${encodeURIComponent(id)}/${action}`, { method: "POST", body: {} });
      setText($("#regulator-error"), "");
    } catch (err) {
      panelError($("#regulator-error"), err);
    } finally {
      button.disabled = false;
    }
    if (state.me) await refreshEnterprises();
  }

  async function refreshSurveillance() {
    try {
      const { data } = await api("/v1/audit/surveillance");
      renderSurveillance(data);
      return true;
    } catch (err) {
      if (!ignorable(err)) setHtml($("#surveillance"), problemHtml(err));
      return false;
    }
  }

  function renderSurveillance(s) {
    const c = s.concentration || {};
    const vol = Array.isArray(s.volume_by_enterprise) ? s.volume_by_enterprise.filter(Boolean) : [];
    const wash = Array.isArray(s.wash_candidates) ? s.wash_candidates.filter(Boolean) : [];
    const volRows = vol.map((v) => `<tr data-enterprise-id="${esc(v.enterprise_id)}"><td class="mono">${esc(v.enterprise_id)}</td>` +
      `<td class="num">${fmtQty(v.bought)}</td><td class="num">${fmtQty(v.sold)}</td><td class="num">${fmtQty(v.trades)}</td>` +
      `<td class="num">${fmtPct(v.share_bps)}</td></tr>`).join("");
    const washRows = wash.map((w) => `<tr><td class="mono">${esc(w.enterprise_a)}</td><td class="mono">${esc(w.enterprise_b)}</td>` +
      `<td class="num">${fmtQty(w.trades)}</td><td class="num">${fmtQty(w.quantity)}</td></tr>`).join("");
    setHtml($("#surveillance"),
      `<dl class="kv"><dt>HHI</dt><dd data-testid="hhi">${fmtDec(c.hhi)}</dd><dt>Top enterprise</dt><dd>${esc(c.top_enterprise ?? "—")}</dd>` +
      `<dt>Top share</dt><dd>${fmtPct(c.top_share_bps)}</dd></dl>` +
      `<div class="section-title">Volume by enterprise</div>` + (volRows
        ? `<table class="grid-table"><thead><tr><th>Enterprise</th><th class="num">Bought (t)</th><th class="num">Sold (t)</th>` +
          `<th class="num">Trades</th><th class="num">Share</th></tr></thead><tbody>${volRows}</tbody></table>` : `<p class="muted">no trades yet</p>`) +
      `<div class="section-title">Possible wash trading</div>` + (washRows
        ? `<table class="grid-table" data-testid="wash-candidates"><thead><tr><th>Enterprise A</th><th>Enterprise B</th>` +
          `<th class="num">Trades</th><th class="num">Qty (t)</th></tr></thead><tbody>${washRows}</tbody></table>` : `<p class="muted">none detected</p>`));
  }

  // --- audit log
  async function searchAudit(after) {
    const form = $("#audit-form");
    const errors = [];
    const afterText = after !== null && after !== undefined ? String(after) : $("#audit-after").value.trim();
    const limit = $("#audit-limit").value.trim() || "50";
    if (afterText && !/^\d+$/.test(afterText)) errors.push({ field: "after", message: "a journal position (whole number)" });
    if (!/^\d+$/.test(limit) || Number(limit) < 1) errors.push({ field: "limit", message: "a whole number ≥ 1" });
    setHtml($("#audit-form-errors"), errors.map((e) => `<div class="field-error">${esc(e.field)}: ${esc(e.message)}</div>`).join(""));
    if (errors.length) return;
    const params = new URLSearchParams();
    if (afterText) params.set("after", afterText);
    params.set("limit", limit);
    const ent = $("#audit-enterprise").value.trim();
    const type = $("#audit-type").value.trim();
    if (ent) params.set("enterprise_id", ent);
    if (type) params.set("type", type);
    try {
      const { data } = await api("/v1/audit/events?" + params.toString());
      const events = Array.isArray(data.events) ? data.events.filter(Boolean) : [];
      $("#audit-after").value = afterText;
      state.auditNext = data.next_after ?? null;
      $("#audit-next").disabled = state.auditNext === null || !events.length;
      renderAudit(events);
    } catch (err) {
      if (!ignorable(err)) {
        const p = problemOf(err);
        setHtml($("#audit-form-errors"), problemHtml(err));
        showFieldErrors(form, p.errors);
      }
    }
  }

  function renderAudit(events) {
    const summary = (d) => Object.entries(d || {}).slice(0, 3)
      .map(([k, v]) => `${k}=${v !== null && typeof v === "object" ? "…" : v}`).join(" ");
    const rows = events.map((e) =>
      `<tr data-position="${esc(e.position)}"><td class="num">${esc(e.position)}</td><td>${fmtDateTime(e.time)}</td>` +
      `<td class="mono">${esc(e.type)}</td><td class="mono">${esc(typeof e.cause === "object" && e.cause ? JSON.stringify(e.cause) : e.cause ?? "")}</td>` +
      `<td><details><summary>${esc(summary(e.data)) || "data"}</summary><pre>${esc(JSON.stringify(e.data ?? {}, null, 2))}</pre></details></td>` +
      `<td class="mono" title="${esc(e.hash)}">${esc(String(e.hash ?? "").slice(0, 12))}</td></tr>`);
    setHtml($("#audit-events tbody"), rows.join("") || `<tr class="empty"><td colspan="6">no events match</td></tr>`);
  }

  async function verifyChain() {
    const btn = $("#verify-button");
    btn.disabled = true;
    setHtml($("#verify-result"), `<span class="muted">Verifying…</span>`);
    try {
      const { data } = await api("/v1/audit/verify");
      const problem = data.problem ? `<div>${esc(typeof data.problem === "object" ? JSON.stringify(data.problem) : data.problem)}</div>` : "";
      setHtml($("#verify-result"), `<div data-ok="${data.ok ? "true" : "false"}">` + (data.ok
        ? `<span class="ok">✓ Chain intact</span> — ${fmtQty(data.events)} events`
        : `<span class="bad">✗ Chain broken</span> — ${fmtQty(data.events)} events checked`) +
        `<div class="mono small">head ${esc(data.head_hash ?? "—")}</div>${problem}</div>`);
    } catch (err) {
      if (!ignorable(err)) setHtml($("#verify-result"), problemHtml(err));
    } finally {
      btn.disabled = false;
    }
  }

  // --- state as of a moment
  /** Journal position → as is; "YYYY-MM-DDTHH:MM[:SS]" (no zone) → that Shanghai time with its offset. */
  function asOfParam(raw) {
    const s = String(raw || "").trim();
    if (!s) return null;
    if (/^\d+$/.test(s)) return s;
    if (/^\d{4}-\d{2}-\d{2}$/.test(s)) return asOfParam(s + "T00:00");
    if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/.test(s)) return shanghaiIso(s);
    return Number.isNaN(new Date(s).getTime()) ? null : s; // already carries a zone
  }

  async function showAsOf(ev) {
    ev.preventDefault();
    const form = $("#asof-form").parentElement;
    const param = asOfParam($("#asof-input").value);
    if (!param) {
      showFieldErrors(form, [{ field: "as_of", message: "a journal position or a date-time" }]);
      setHtml($("#asof-result"), ""); // the previous answer is not the answer to this input
      return;
    }
    showFieldErrors(form, []);
    $("#asof-button").disabled = true;
    setHtml($("#asof-result"), `<span class="muted">Rebuilding state as of ${esc(param)}…</span>`);
    try {
      const { data } = await api("/v1/audit/state?as_of=" + encodeURIComponent(param));
      renderAsOf(data);
    } catch (err) {
      if (!ignorable(err)) {
        showFieldErrors(form, problemOf(err).errors);
        setHtml($("#asof-result"), problemHtml(err));
      }
    } finally {
      $("#asof-button").disabled = false;
    }
  }

  /** A table for a list of objects: columns are the union of their keys; prices shown in CNY. */
  function genericTable(rows, testid) {
    if (!rows.length) return `<p class="muted">none</p>`;
    const cols = [];
    for (const r of rows) for (const k of Object.keys(r)) if (!cols.includes(k)) cols.push(k);
    const fenKey = (k) => /price|cash|fee|amount|^(last|open|high|low|band_low|band_high|prev_close|previous_close|close)$/.test(k) && k !== "fee_bps";
    const cell = (k, v) => v !== null && typeof v === "object" ? `<td class="mono small">${esc(JSON.stringify(v))}</td>`
      : isNum(v) ? `<td class="num">${fenKey(k) ? fmtFen(v) : fmtQty(v)}</td>` : `<td>${fmtDec(v)}</td>`;
    const numeric = (k) => rows.every((r) => r[k] === null || r[k] === undefined || isNum(r[k]));
    return `<table class="grid-table" data-testid="${esc(testid)}"><thead><tr>${cols.map((k) =>
      `<th class="${numeric(k) ? "num" : ""}">${esc(k.replace(/_/g, " "))}</th>`).join("")}</tr></thead>` +
      `<tbody>${rows.map((r) => `<tr>${cols.map((k) => cell(k, r[k])).join("")}</tr>`).join("")}</tbody></table>`;
  }
  const ranges = (list) => (Array.isArray(list) && list.length
    ? list.map((r) => (Array.isArray(r) ? (r[0] === r[1] ? `${r[0]}` : `${r[0]}–${r[1]}`) : JSON.stringify(r))).join(", ") : "—");

  /** GET /v1/audit/state: `{as_of, time, accounts, open_orders, markets, fees_collected, state_hash, …}`. */
  function renderAsOf(s) {
    const parts = [];
    const asOf = String(s.as_of ?? "");
    const point = /^\d+$/.test(asOf) ? `journal position ${esc(asOf)}` : esc(asOf || "—");
    const kv = [["As of", point], ["Engine time", isNum(s.time) ? fmtDateTime(s.time) : fmtDec(s.time)]];
    if (s.fees_collected !== undefined) kv.push(["Fees collected (CNY)", fmtFen(s.fees_collected)]);
    if (s.state_hash !== undefined) {
      kv.push(["State hash", `<span class="mono small" title="${esc(s.state_hash)}">${esc(String(s.state_hash ?? "—").slice(0, 16))}</span>`]);
    }
    parts.push(`<div class="section-title">Point in time</div><dl class="kv" data-testid="asof-point">${kv.map(([k, v]) =>
      `<dt>${esc(k)}</dt><dd>${v}</dd>`).join("")}</dl>`);
    const accounts = s.accounts && typeof s.accounts === "object" ? Object.entries(s.accounts) : [];
    const acctRows = [];
    const holdRows = [];
    for (const [id, a] of accounts) {
      const cash = (a && a.cash) || {};
      acctRows.push(`<tr data-enterprise-id="${esc(id)}"><td class="mono">${esc(id)}</td><td>${badge(a && a.status)}</td>` +
        `<td>${a && a.frozen ? badge("frozen") : "no"}</td><td class="num" data-value="${esc(cash.available ?? "")}">${fmtFen(cash.available)}</td>` +
        `<td class="num" data-value="${esc(cash.held ?? "")}">${fmtFen(cash.held)}</td></tr>`);
      for (const [sym, c] of Object.entries((a && a.credits) || {})) {
        holdRows.push(`<tr data-enterprise-id="${esc(id)}" data-instrument="${esc(sym)}"><td class="mono">${esc(id)}</td><td>${esc(sym)}</td>` +
          `<td class="num">${fmtQty(c && c.available)}</td><td class="num">${fmtQty(c && c.held)}</td>` +
          `<td class="mono small">${esc(ranges(c && c.serials_available))}</td><td class="mono small">${esc(ranges(c && c.serials_held))}</td></tr>`);
      }
    }
    parts.push(`<div class="section-title">Accounts</div>` + (acctRows.length
      ? `<table class="grid-table" data-testid="asof-accounts"><thead><tr><th>Enterprise</th><th>Status</th><th>Frozen</th>` +
        `<th class="num">Cash available</th><th class="num">Cash held</th></tr></thead><tbody>${acctRows.join("")}</tbody></table>` : `<p class="muted">none</p>`));
    parts.push(`<div class="section-title">Holdings</div>` + (holdRows.length
      ? `<table class="grid-table" data-testid="asof-holdings"><thead><tr><th>Enterprise</th><th>Instrument</th><th class="num">Available (t)</th>` +
        `<th class="num">Held (t)</th><th>Serials available</th><th>Serials held</th></tr></thead><tbody>${holdRows.join("")}</tbody></table>` : `<p class="muted">none</p>`));
    const orderList = Array.isArray(s.open_orders) ? s.open_orders : Array.isArray(s.orders) ? s.orders : [];
    const orders = orderList.filter((o) => o && typeof o === "object")
      .sort((a, b) => String(a.order_id ?? "").localeCompare(String(b.order_id ?? ""), undefined, { numeric: true }));
    const orderRows = orders.map((o) =>
      `<tr data-order-id="${esc(o.order_id)}" data-enterprise-id="${esc(o.enterprise_id)}"><td class="mono">${esc(o.order_id)}</td>` +
      `<td class="mono">${esc(o.enterprise_id ?? "")}</td><td>${esc(o.instrument ?? "")}</td>${sideCell(o.side)}${priceCell(o)}` +
      `<td class="num">${fmtQty(o.quantity)}</td><td class="num">${fmtQty(o.remaining_quantity)}</td>` +
      `<td>${esc(o.time_in_force ?? "")}</td><td class="num">${fmtFen(o.held_cash)}</td></tr>`);
    parts.push(`<div class="section-title">Open orders</div>` + (orderRows.length
      ? `<table class="grid-table" data-testid="asof-open-orders"><thead><tr><th>Order</th><th>Enterprise</th><th>Instrument</th>` +
        `<th>Side</th><th class="num">Price</th><th class="num">Qty (t)</th><th class="num">Remaining (t)</th><th>TIF</th>` +
        `<th class="num">Cash held</th></tr></thead><tbody>${orderRows.join("")}</tbody></table>` : `<p class="muted">none</p>`));
    const markets = s.markets && typeof s.markets === "object"
      ? (Array.isArray(s.markets) ? s.markets : Object.entries(s.markets).map(([sym, m]) => ({ symbol: sym, ...(m && typeof m === "object" ? m : { value: m }) })))
      : [];
    parts.push(`<div class="section-title">Markets</div>` + genericTable(markets, "asof-markets"));
    const shown = ["as_of", "time", "fees_collected", "state_hash", "accounts", "open_orders", "orders", "markets"];
    for (const [k, v] of Object.entries(s)) { // anything else the API adds (e.g. obligations)
      if (shown.includes(k) || v === null || v === undefined) continue;
      const rows = Array.isArray(v) ? v.filter((r) => r && typeof r === "object")
        : typeof v === "object" ? Object.entries(v).map(([key, r]) => ({ key, ...(r && typeof r === "object" ? r : { value: r }) })) : [{ value: v }];
      parts.push(`<div class="section-title">${esc(k.replace(/_/g, " "))}</div>` + genericTable(rows, "asof-" + k.replace(/_/g, "-")));
    }
    setHtml($("#asof-result"), parts.join(""));
  }

  // ---------------------------------------------------------------- wiring
  function bindEvents() {
    $("#signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const token = $("#token-input").value.trim();
      if (!token) { setText($("#sign-in-error"), "Enter an API token."); return; }
      signIn(token);
    });
    $("#sign-out").addEventListener("click", () => signOut(""));
    $("#instrument-select").addEventListener("change", (ev) => {
      state.symbol = ev.target.value;
      sessionStorage.setItem(SYMBOL_KEY, state.symbol);
      state.candles = [];
      for (const sel of ["#book-bids tbody", "#book-asks tbody", "#tape tbody"]) setHtml($(sel), "");
      renderInstrumentSelect();
      renderStats();
      updateOrderHint();
      refreshMarket().then((ok) => { if (ok) markUpdated(); });
    });
    $("#interval-switch").addEventListener("click", (ev) => {
      const btn = ev.target.closest("button[data-interval]");
      if (!btn) return;
      state.interval = btn.dataset.interval;
      $$("#interval-switch button").forEach((b) => b.classList.toggle("active", b === btn));
      state.candles = [];
      renderCandles();
      refreshCandles();
    });
    // Clicking a book level prefills the order form to trade against it.
    $(".book").addEventListener("click", (ev) => {
      const row = ev.target.closest("tr[data-price]");
      if (!row || role() !== "trader") return;
      $("#order-type").value = "limit";
      $("#order-side").value = row.dataset.side === "sell" ? "buy" : "sell";
      $("#order-price").value = fmtFen(Number(row.dataset.price)).replace(/,/g, "");
      updateOrderHint();
    });
    $("#order-type").addEventListener("change", updateOrderHint);
    $("#order-form").addEventListener("submit", submitOrder);
    $("#open-orders").addEventListener("click", (ev) => {
      const btn = ev.target.closest("button.cancel");
      if (btn) cancelOrder(btn.dataset.orderId, btn);
    });
    $("#enterprise-select").addEventListener("change", (ev) => selectEnterprise(ev.target.value));
    $("#evaluation-period").addEventListener("change", (ev) => {
      state.period = ev.target.value;
      if (state.enterpriseId) refreshEvaluation(state.enterpriseId);
    });
    $("#enterprises").addEventListener("click", (ev) => {
      const btn = ev.target.closest("button[data-enterprise-id]");
      if (!btn) return;
      if (btn.dataset.action) enterpriseAction(btn.dataset.enterpriseId, btn.dataset.action, btn);
      else { selectEnterprise(btn.dataset.enterpriseId); $("#enterprise-panel").scrollIntoView({ behavior: "smooth" }); }
    });
    $("#audit-form").addEventListener("submit", (ev) => { ev.preventDefault(); searchAudit(null); });
    $("#audit-next").addEventListener("click", () => { if (state.auditNext !== null) searchAudit(state.auditNext); });
    $("#verify-button").addEventListener("click", verifyChain);
    $("#asof-form").addEventListener("submit", showAsOf);
    $("#asof-datetime").addEventListener("change", (ev) => {
      const iso = ev.target.value ? shanghaiIso(ev.target.value) : null;
      if (iso) $("#asof-input").value = iso;
    });
    document.addEventListener("visibilitychange", () => { if (!document.hidden) tick(false); });
    let resizeTimer = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => { if (state.me) renderCandles(); }, 120);
    });
    // Last line of defence: a failed promise somewhere must not surface as a console error.
    window.addEventListener("unhandledrejection", (ev) => ev.preventDefault());
  }

  function init() {
    bindEvents();
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) {
      $("#token-input").value = saved;
      signIn(saved);
    } else {
      $("#token-input").focus();
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
