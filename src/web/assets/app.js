// The approval ledger's web page: due-time countdowns, keyboard control, and live queue updates.
// Served from the ledger itself under a strict Content-Security-Policy (no inline script runs);
// every decision is a POSTed form carrying its CSRF token, so the page works without this script
// too, only with fewer keys.
"use strict";

(function () {
  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));

  // ---- countdowns ----------------------------------------------------------------------------
  function describe(seconds) {
    const prefix = seconds < 0 ? "overdue " : "in ";
    let s = Math.abs(Math.round(seconds));
    const days = Math.floor(s / 86400), hours = Math.floor(s / 3600) % 24, minutes = Math.floor(s / 60) % 60;
    let text;
    if (days > 0) text = `${days}d ${hours}h`;
    else if (hours > 0) text = `${hours}h ${minutes}m`;
    else if (minutes > 0) text = `${minutes}m ${s % 60}s`;
    else text = `${s}s`;
    return prefix + text;
  }
  function tick() {
    const now = Date.now();
    for (const element of $$("[data-due]")) {
      const left = (Date.parse(element.dataset.due) - now) / 1000;
      element.textContent = describe(left);
      element.classList.toggle("overdue", left <= 0);
      element.classList.toggle("due-soon", left > 0 && left <= 15 * 60);
    }
  }

  // ---- help ----------------------------------------------------------------------------------
  function toggleHelp() {
    const help = $("#help");
    if (!help) return;
    if (help.open) help.close(); else help.showModal();
  }

  function typing(target) {
    return target && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
  }

  // ---- the queue -----------------------------------------------------------------------------
  function queuePage(table) {
    const body = $("#queue-rows", table);
    const status = $("#live-status");
    const mayDecide = table.dataset.mayDecide === "true";
    let selectedId = null;

    const rows = () => $$("tr[data-id]", body);
    function select(row, focus) {
      for (const other of rows()) {
        other.classList.remove("selected");
        other.removeAttribute("aria-selected");
      }
      if (!row) { selectedId = null; return; }
      row.classList.add("selected");
      row.setAttribute("aria-selected", "true");
      selectedId = row.dataset.id;
      if (focus !== false) {
        const link = $("a.item-link", row);
        if (link) link.focus({ preventScroll: false });
      }
    }
    function selected() {
      return rows().find((row) => row.dataset.id === selectedId) || null;
    }
    function move(step) {
      const all = rows();
      if (all.length === 0) return;
      const index = all.indexOf(selected());
      const next = index < 0 ? 0 : Math.min(all.length - 1, Math.max(0, index + step));
      select(all[next]);
    }
    function post(action) {
      const row = selected();
      if (!row || !mayDecide) return;
      const form = $("#key-form");
      form.action = `/ui/items/${row.dataset.id}/${action}`;
      // The content the reviewer saw listed: refused if the submitter revised it meanwhile.
      form.elements.seen_output_hash.value = row.dataset.hash;
      form.submit();
    }
    function askReason(action, title, label, field) {
      const row = selected();
      if (!row || !mayDecide) return;
      const dialog = $("#reason-dialog");
      const form = $("#reason-form");
      form.action = `/ui/items/${row.dataset.id}/${action}`;
      form.elements.seen_output_hash.value = row.dataset.hash;
      $("#reason-title").textContent = title;
      $("#reason-label").textContent = label;
      const text = $("#reason-text");
      text.name = field;
      text.value = "";
      dialog.showModal();
      text.focus();
    }
    const cancel = $("#reason-cancel");
    if (cancel) cancel.addEventListener("click", () => $("#reason-dialog").close());
    const reason = $("#reason-text");
    if (reason) {
      reason.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey) {
          event.preventDefault();
          if (reason.value.trim() !== "") $("#reason-form").requestSubmit();
        }
      });
    }

    body.addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-id]");
      if (row) select(row, false);
    });
    body.addEventListener("focusin", (event) => {
      const row = event.target.closest("tr[data-id]");
      if (row && row.dataset.id !== selectedId) select(row, false);
    });

    document.addEventListener("keydown", (event) => {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      if (typing(event.target) || $("dialog[open]")) return;
      switch (event.key) {
        case "j": move(1); break;
        case "k": move(-1); break;
        case "Enter": {
          const row = selected();
          if (row && event.target === document.body) window.location = `/ui/items/${row.dataset.id}`;
          return;
        }
        case "c": post("claim"); break;
        case "a": post("approve"); break;
        case "e": {
          const row = selected();
          if (row) window.location = `/ui/items/${row.dataset.id}#edit`;
          break;
        }
        case "r": askReason("reject", "Reject", "Reason", "reason"); break;
        case "x": askReason("request-changes", "Request changes", "Changes to ask for", "instructions"); break;
        default: return;
      }
      event.preventDefault();
    });

    // Keep the selection across reloads (a claim comes back to the queue).
    const remembered = sessionStorage.getItem("ledger-selected");
    const start = rows().find((row) => row.dataset.id === remembered) || rows()[0];
    select(start, false);
    window.addEventListener("beforeunload", () => {
      if (selectedId) sessionStorage.setItem("ledger-selected", selectedId);
    });

    // Live updates: the server says when the queue changed; the rows are fetched again.
    if (!window.EventSource) return;
    const queue = table.dataset.live;
    const source = new EventSource(`/ui/live?queue=${encodeURIComponent(queue)}`);
    let refreshing = false;
    source.addEventListener("queue", async () => {
      if (refreshing) return;
      refreshing = true;
      try {
        const response = await fetch(`/ui/queue/rows${window.location.search}`, { credentials: "same-origin" });
        if (!response.ok) return;
        const before = rows().map((row) => row.dataset.id);
        const index = rows().indexOf(selected());
        body.innerHTML = await response.text();
        const after = rows().map((row) => row.dataset.id);
        const gone = before.filter((id) => !after.includes(id)).length;
        const arrived = after.filter((id) => !before.includes(id)).length;
        const keep = selected() || rows()[Math.min(Math.max(index, 0), rows().length - 1)] || null;
        select(keep, false);
        tick();
        if (status) {
          status.textContent = `Queue updated: ${arrived} new, ${gone} gone, ${after.length} open.`;
        }
      } finally {
        refreshing = false;
      }
    });
  }

  // ---- the item ------------------------------------------------------------------------------
  function itemPage() {
    const editor = $("#edit-output");
    const click = (id) => { const button = $(id); if (button) button.click(); };
    if (editor) {
      editor.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
          event.preventDefault();
          $("#edit-form").requestSubmit();
        }
        if (event.key === "Escape") editor.blur();
      });
      if (window.location.hash === "#edit") {
        editor.focus();
        editor.setSelectionRange(editor.value.length, editor.value.length);
      }
    }
    document.addEventListener("keydown", (event) => {
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      if (typing(event.target) || $("dialog[open]")) return;
      switch (event.key) {
        case "c": click("#claim-button"); break;
        case "a": click("#approve-button"); break;
        case "e": if (editor) { editor.focus(); } break;
        case "r": { const field = $("#reject-reason"); if (field) field.focus(); break; }
        case "x": { const field = $("#changes-instructions"); if (field) field.focus(); break; }
        default: return;
      }
      event.preventDefault();
    });
    for (const [field, form] of [["#reject-reason", "#reject-form"], ["#changes-instructions", "#changes-form"]]) {
      const element = $(field);
      if (!element) continue;
      element.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey) {
          event.preventDefault();
          if (element.value.trim() !== "") $(form).requestSubmit();
        }
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    tick();
    setInterval(tick, 1000);
    document.addEventListener("keydown", (event) => {
      if (event.key === "?" && !typing(event.target)) {
        event.preventDefault();
        toggleHelp();
      }
    });
    const table = $("#queue");
    if (table) queuePage(table);
    if ($("#edit-form") || $("#item-status")) itemPage();
    const confirm = $("#confirm-edit");
    if (confirm) confirm.focus();
  });
})();
