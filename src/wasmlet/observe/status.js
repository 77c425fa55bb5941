// The status page: polls status.json and redraws. Guest text (names, backtraces, stderr) is
// untrusted: everything goes into the page as text nodes, never as HTML.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function seconds(s) {
  if (s === null || s === undefined) return "—";
  if (s < 0.001) return (s * 1000).toFixed(2) + " ms";
  if (s < 1) return (s * 1000).toPrecision(3) + " ms";
  return s.toPrecision(3) + " s";
}

function count(n) { return String(Math.round(n || 0)); }
function rate(r) { return (r || 0).toFixed(r && r < 10 ? 2 : 1) + "/s"; }

function duration(s) {
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
  const parts = d ? [d + "d", h + "h"] : h ? [h + "h", m + "m"] : m ? [m + "m"] : [];
  return parts.concat(m < 1 && !h && !d ? [Math.floor(s) + "s"] : []).join(" ");
}

function numberCells(n) {
  return [
    el("td", { class: "n requests" }, count(n.requests)),
    el("td", { class: "n rate" }, rate(n.rate)),
    el("td", { class: "n p50" }, seconds(n.p50)),
    el("td", { class: "n p90" }, seconds(n.p90)),
    el("td", { class: "n p99" }, seconds(n.p99)),
    el("td", { class: "n errors" + (n.errors ? " bad" : "") }, count(n.errors)),
  ];
}

function header(...names) {
  return el("tr", {}, ...names.map((h) => el("th", { class: h.startsWith("#") ? "n" : "" },
    h.replace(/^#/, ""))));
}

function app(a) {
  const state = String(a.state || "");
  const section = el("section", { class: "app", "data-app": a.name },
    el("h2", {}, el("span", { class: "name" }, a.name),
      el("span", { class: "badge " + state.replace(/ /g, "-") }, state),
      a.source ? el("small", { class: "summary" }, a.source) : null));
  if (a.error) section.append(el("p", { class: "bad" }, a.error));
  const t = a.total;
  const summary = el("p", { class: "summary total" },
    el("b", { class: "requests" }, count(t.requests)), " requests · ",
    el("b", { class: "rate" }, rate(t.rate)), " · p50 ", el("b", {}, seconds(t.p50)),
    " · p90 ", el("b", {}, seconds(t.p90)), " · p99 ", el("b", {}, seconds(t.p99)),
    " · 5xx ", el("b", { class: "errors" }, count(t.errors)),
    " · no route ", el("b", {}, count(a.not_found)));
  if (a.host) {
    summary.append(" · cold starts ", el("b", { class: "cold" }, count(a.host.cold_starts)));
  }
  section.append(summary);
  if (a.routes.length) {
    section.append(el("h3", {}, "Routes"), el("table", { class: "routes" },
      header("Route", "Component", "Executor", "#Requests", "#Rate", "#p50", "#p90", "#p99",
        "#5xx"),
      ...a.routes.map((r) => el("tr", { "data-route": r.route },
        el("td", {}, el("code", {}, r.route)), el("td", { class: "component" }, r.component),
        el("td", {}, r.executor), ...numberCells(r)))));
  }
  if (a.triggers.length) {
    section.append(el("h3", {}, "Other triggers"), el("table", { class: "triggers" },
      header("Type", "Component", "Listens to", "#Handled", "#Failed"),
      ...a.triggers.map((tr) => el("tr", { "data-trigger": tr.type },
        el("td", {}, tr.type), el("td", {}, tr.component), el("td", {}, el("code", {}, tr.detail)),
        el("td", { class: "n" }, count(tr.handled.ok)),
        el("td", { class: "n" + (tr.handled.error ? " bad" : "") }, count(tr.handled.error))))));
  }
  if (a.components.length) {
    section.append(el("h3", {}, "Components"), el("table", { class: "components" },
      header("Component", "Guest failures"),
      ...a.components.map((c) => {
        const kinds = Object.entries(c.failures).filter(([, n]) => n > 0);
        const text = kinds.length ? kinds.map(([k, n]) => k + " " + count(n)).join(", ") : "none";
        return el("tr", { "data-component": c.id }, el("td", {}, c.id),
          el("td", { class: "failures" + (kinds.length ? " bad" : "") }, text));
      })));
  }
  return section;
}

function failure(e) {
  const when = new Date(e.time * 1000).toLocaleTimeString();
  const box = el("div", { class: "error" },
    el("div", { class: "head" }, el("span", { class: "when" }, when),
      el("b", {}, e.app + " / " + e.component), el("span", { class: "bad" }, e.kind),
      el("span", { class: "when" }, "pid " + e.pid)),
    el("div", { class: "message" }, e.message));
  if (e.backtrace.length) box.append(el("pre", { class: "backtrace" }, e.backtrace.join("\n")));
  if (e.stderr) box.append(el("pre", { class: "stderr" }, e.stderr));
  return box;
}

function render(s) {
  const processes = s.processes === 1 ? "1 process" : s.processes + " processes";
  document.getElementById("meta").textContent =
    "up " + duration(s.uptime) + " · " + processes + " · rates over the last ~" +
    s.rate_window + " s, latency since start";
  const apps = document.getElementById("apps");
  apps.replaceChildren(...(s.apps.length ? s.apps.map(app) :
    [el("section", {}, el("p", { class: "empty" }, "no apps"))]));
  const errors = document.getElementById("errors");
  errors.replaceChildren(...(s.errors.length ? s.errors.map(failure) :
    [el("p", { class: "empty" }, "none")]));
}

async function poll() {
  let wait = 1000;
  const live = document.getElementById("live");
  try {
    const r = await fetch("status.json", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    const s = await r.json();
    render(s);
    wait = s.refresh * 1000;
    live.className = "ok";
    live.textContent = "live · " + new Date().toLocaleTimeString();
  } catch (err) {
    live.className = "down";
    live.textContent = "no answer (" + err.message + "), retrying";
  }
  setTimeout(poll, wait);
}

poll();
