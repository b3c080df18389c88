// Settings tab: the search box and Reload UI's wait (webui/ui/settings_tab.py, reload_ui.py).

// Search filters in the page: each option block (#setting_<key>) is shown when the words typed
// appear in its label, key or section (the index carries key and section; the block's own text
// carries a translated label); a section with nothing left is hidden. A data attribute, not a
// class or style, because Gradio rewrites both when it redraws a block.
(() => {
  const style = document.createElement("style");
  style.textContent = "[data-search-hidden] { display: none !important; }";
  document.head.appendChild(style);
})();

function sdStudioFilterSettings(query) {
  const root = document.getElementById("tab_settings") || document;
  const data = document.getElementById("settings_search_index");
  const index = data ? JSON.parse(data.dataset.index || "{}") : {};
  const options = index.options || {}, sections = index.sections || {};
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  for (const section of root.querySelectorAll(".settings-section")) {
    const title = (sections[section.id] || "").toLowerCase();
    let any = false;
    for (const block of section.querySelectorAll("[id^='setting_']")) {
      if (!(block.id in options)) continue;
      const text = options[block.id] + " " + block.textContent.toLowerCase();
      const show = words.every((w) => text.includes(w) || title.includes(w));
      block.toggleAttribute("data-search-hidden", !show);
      any = any || show;
    }
    // A section without options (Defaults) is shown when its title matches.
    const titleMatch = words.length > 0 && words.every((w) => title.includes(w));
    section.toggleAttribute("data-search-hidden", words.length > 0 && !any && !titleMatch);
  }
}

document.addEventListener("input", (event) => {
  if (event.target.closest && event.target.closest("#settings_search")) sdStudioFilterSettings(event.target.value);
});

// Reload UI: the server builds the new page and swaps it in once its queue is idle; wait until
// its config carries another build id, then reload (A1111 pings its server the same way).
function sdStudioAfterReloadUi(answer) {
  if (!answer || !answer.includes("data-reloading")) return;
  const note = document.querySelector("#settings_reload_note [data-build]");
  const mine = note ? note.dataset.build : "";
  const started = Date.now();
  const poll = () => {
    fetch("./config", {cache: "no-store", credentials: "same-origin"})
      .then((r) => (r.ok ? r.text() : ""))
      .then((text) => {
        if (text.includes("data-build") && !text.includes(mine)) location.reload();
        else if (Date.now() - started < 15 * 60 * 1000) setTimeout(poll, 500);
      })
      .catch(() => setTimeout(poll, 1000));
  };
  setTimeout(poll, 500);
}
