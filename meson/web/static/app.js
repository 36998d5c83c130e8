// The dashboard page: renders /api/events (server-sent events carrying the whole state as JSON) into the
// tables. No framework and no build step; every value goes in through textContent, never as HTML, except
// the DAG's SVG, which the server drew and escaped.
"use strict";

const PHASE_COLOUR = {
  Succeeded: "#2e7d32", Running: "#0277bd", Pending: "#f9a825", Retrying: "#8e24aa",
  Failed: "#c62828", Waiting: "#9e9e9e", Skipped: "#cfd8dc", Omitted: "#cfd8dc",
  Deploying: "#0277bd", Updating: "#0277bd", Suspended: "#8e24aa", RollingBack: "#8e24aa",
};

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function amount(resource, value) {
  if (value === null || value === undefined) return "-";
  if (resource === "cpu") return String(Math.round(value / 100) / 10);
  if (resource === "memory" || resource === "ephemeral-storage") {
    for (const [s, f] of [["Ti", 2 ** 40], ["Gi", 2 ** 30], ["Mi", 2 ** 20], ["Ki", 2 ** 10]]) {
      if (value >= f) return (value / f).toPrecision(3).replace(/\.?0+$/, "") + s;
    }
  }
  return String(value);
}

function bar(r) {
  const scale = Math.max(r.limit || 0, r.guaranteed, r.usage, 1);
  const pct = (v) => (100 * v / scale).toFixed(2) + "%";
  const within = Math.min(r.usage, r.guaranteed);
  const box = el("div", { class: "bar", title: `${r.resource}: ${amount(r.resource, r.usage)} used` });
  box.append(el("div", { class: "within", style: `left:0;width:${pct(within)}` }));
  if (r.usage > r.guaranteed) {
    box.append(el("div", { class: "borrowed", style: `left:${pct(r.guaranteed)};width:${pct(r.usage - r.guaranteed)}` }));
  }
  if (r.guaranteed && r.limit !== r.guaranteed) box.append(el("div", { class: "guarantee", style: `left:${pct(r.guaranteed)}` }));
  return box;
}

function stack(items) {
  const td = el("td");
  items.forEach((item, i) => { if (i) td.append(el("br")); td.append(item); });
  return td;
}

function renderQueues(queues) {
  const body = document.querySelector("#queues tbody");
  body.replaceChildren();
  for (const q of queues) {
    const resources = q.resources.length ? q.resources : [{ resource: "-", guaranteed: 0, limit: null, usage: 0, borrowed: 0 }];
    const notes = [];
    if (!q.active) notes.push(el("span", { class: "inactive" }, `inactive: ${q.message}`));
    if (q.rate) notes.push(`rate ${q.rate}`);
    if (q.stopPolicy !== "None") notes.push(`stop ${q.stopPolicy}`);
    const name = el("td", { class: "queue-name" }, el("span", { class: "tree" }, "   ".repeat(q.depth) + (q.depth ? "└ " : "")), q.name);
    body.append(el("tr", { "data-queue": q.name },
      name,
      el("td", { class: "num" }, q.weight),
      stack(resources.map((r) => r.resource)),
      stack(resources.map((r) => (r.resource === "-" ? "" : bar(r)))),
      stack(resources.map((r) => `${amount(r.resource, r.usage)} / ${amount(r.resource, r.guaranteed)} / ${amount(r.resource, r.limit)}`)),
      stack(resources.map((r) => (r.borrowed ? amount(r.resource, r.borrowed) : "-"))),
      el("td", { class: "num" }, q.admitted),
      el("td", { class: "num" }, q.pending),
      el("td", {}, ...notes.flatMap((n, i) => (i ? [", ", n] : [n]))),
    ));
  }
}

function eta(row) {
  if (row.eta === undefined || row.eta === null) return "-";
  const s = Math.max(0, Math.round(row.eta - Date.now() / 1000));
  return s < 60 ? `in ${s}s` : s < 3600 ? `in ${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s` : `in ${Math.floor(s / 3600)}h`;
}

function renderPending(rows) {
  const body = document.querySelector("#pending tbody");
  body.replaceChildren();
  const shown = rows.slice(0, 200);
  for (const r of shown) {
    const what = `${r.namespace}/${r.name} ${r.workload}` + (r.count > 1 ? ` (x${r.count})` : "");
    body.append(el("tr", { "data-workload": `${r.namespace}/${r.name}/${r.workload}` },
      el("td", {}, r.queue), el("td", { class: "num" }, r.position ?? "-"), el("td", {}, what),
      el("td", {}, r.priority), el("td", {}, eta(r)), el("td", {}, r.reason)));
  }
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: 6, class: "empty" }, "nothing is waiting for admission")));
  const total = rows.reduce((n, r) => n + r.count, 0);
  document.getElementById("pending-count").textContent = `(${total}${rows.length > shown.length ? ", first 200 rows shown" : ""})`;
}

function renderWorkflows(workflows, count) {
  const box = document.getElementById("workflows");
  box.replaceChildren();
  for (const wf of workflows) {
    const phase = el("span", { class: "phase", style: `background:${PHASE_COLOUR[wf.phase] || "#9e9e9e"}` }, wf.phase);
    const meta = el("span", { class: "meta" }, ` queue ${wf.queue}` + (wf.priority ? `, priority ${wf.priority}` : "") +
      (wf.progress ? `, ${wf.progress}` : "") + (wf.message ? ` — ${wf.message}` : ""));
    const dag = el("div", { class: "dag-box" });
    dag.innerHTML = wf.svg; // drawn and escaped by the server (meson/web/dag.py)
    box.append(el("div", { class: "workflow", "data-workflow": `${wf.namespace}/${wf.name}`, "data-phase": wf.phase },
      el("h3", {}, `${wf.namespace}/${wf.name} `, phase, meta), dag));
  }
  if (!workflows.length) box.append(el("p", { class: "empty" }, "no workflows"));
  document.getElementById("workflow-count").textContent =
    `(${count}${count > workflows.length ? `, ${workflows.length} drawn: unfinished first` : ""})`;
}

function renderStreamjobs(jobs) {
  const body = document.querySelector("#streamjobs tbody");
  body.replaceChildren();
  for (const j of jobs) {
    const revs = el("td", {}, ...j.revisions.map((r) => el("span", {
      class: "rev" + (r.current ? " current" : "") + (r.failed ? " failed" : ""),
      title: [r.current && "current", r.stable && "stable", r.failed && "failed"].filter(Boolean).join(", ") || "earlier",
    }, r.revision + (r.stable ? "✓" : ""))));
    body.append(el("tr", { "data-streamjob": `${j.namespace}/${j.name}` },
      el("td", {}, `${j.namespace}/${j.name}`), el("td", {}, j.queue),
      el("td", {}, el("span", { class: "phase", style: `background:${PHASE_COLOUR[j.phase] || "#9e9e9e"}` }, j.phase)),
      el("td", { class: "num" }, `${j.ready}/${j.desired}`), el("td", { class: "num" }, j.replicas),
      el("td", { class: "num" }, j.updated), revs, el("td", {}, j.message)));
  }
  if (!jobs.length) body.append(el("tr", {}, el("td", { colspan: 8, class: "empty" }, "no stream jobs")));
}

function render(state) {
  renderQueues(state.queues);
  renderPending(state.pending);
  renderWorkflows(state.workflows, state.workflowCount);
  renderStreamjobs(state.streamjobs);
  document.body.dataset.updated = String(Date.now());
}

function legend() {
  const box = document.getElementById("legend");
  for (const p of ["Waiting", "Pending", "Running", "Retrying", "Succeeded", "Failed", "Skipped"]) {
    box.append(el("span", {}, el("i", { style: `background:${PHASE_COLOUR[p]}` }), p));
  }
}

function connect() {
  const status = document.getElementById("status");
  const source = new EventSource("/api/events");
  source.addEventListener("state", (e) => {
    render(JSON.parse(e.data));
    status.textContent = "live";
    status.className = "status live";
  });
  // EventSource reconnects by itself (the operator restarting, a port-forward dropping).
  source.onerror = () => { status.textContent = "reconnecting…"; status.className = "status down"; };
}

legend();
connect();
