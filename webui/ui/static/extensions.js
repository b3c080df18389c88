// A1111's page API for extension JavaScript (gradioApp, onUiUpdate, onUiLoaded, opts, ...), the
// localization translator, and the loader of extension JS/CSS. It runs first in <head>; the
// language, the settings and the asset list come from /webui-ext/page.json, so a new
// Localization setting takes effect on the next page load without a restart.
(function () {
  "use strict";
  const callbacks = { update: [], after: [], loaded: [], tab: [], options: [] };
  let loadedFired = false;
  let afterTimer = null;
  let currentTab = null;

  window.opts = window.opts || {};
  window.localization = window.localization || {};
  window.gradioApp = function () {
    const app = document.getElementsByTagName("gradio-app");
    const root = app.length ? app[0] : document;
    return root.shadowRoot || root;
  };
  window.get_uiCurrentTab = function () {
    return gradioApp().querySelector('#tabs [role="tab"][aria-selected="true"]');
  };
  window.get_uiCurrentTabContent = function () {
    const tab = get_uiCurrentTab();
    if (!tab) return null;
    const id = tab.getAttribute("aria-controls");
    return id ? document.getElementById(id) : null;
  };
  window.onUiUpdate = (cb) => callbacks.update.push(cb);
  window.onAfterUiUpdate = (cb) => callbacks.after.push(cb);
  window.onUiLoaded = (cb) => { callbacks.loaded.push(cb); if (loadedFired) run([cb]); };
  window.onUiTabChange = (cb) => callbacks.tab.push(cb);
  window.onOptionsChanged = (cb) => callbacks.options.push(cb);
  window.executeCallbacks = (list, arg) => run(list, arg);

  function run(list, arg) {
    for (const cb of list) {
      try { cb(arg); } catch (e) { console.error("extension callback failed:", e); }
    }
  }

  // ---- localization: exact-match translation of text nodes, titles and placeholders (A1111's packs)
  const SKIP_TAGS = new Set(["SCRIPT", "STYLE", "TEXTAREA", "INPUT", "CODE", "PRE"]);
  // Dynamic text (the model line names a path) and names/errors in the load table stay as they are.
  const SKIP_IDS = ["model_status", "extensions_table"];
  const ORIGINAL = new WeakMap();

  function translated(text) {
    const key = text.trim();
    if (!key || /^[\d\s.,:%/+\-x×()]+$/.test(key)) return null;
    const value = window.localization[key];
    if (typeof value !== "string" || value === key) return null;
    return text.replace(key, value);
  }

  // Text inside inputs, code and user content stays; attributes (placeholder, title) of inputs are translated.
  function skipped(el, forText) {
    for (let node = el; node && node !== document.body; node = node.parentElement) {
      if (forText && SKIP_TAGS.has(node.tagName)) return true;
      if (node.isContentEditable) return true;
      if (node.id && SKIP_IDS.includes(node.id)) return true;
      if (node.classList && node.classList.contains("notranslate")) return true;
    }
    return false;
  }

  function translateAttributes(el) {
    if (skipped(el, false)) return;
    for (const attr of ["title", "placeholder", "aria-label"]) {
      const value = el.getAttribute(attr);
      const next = value ? translated(value) : null;
      if (next !== null) el.setAttribute(attr, next);
    }
  }

  function translateNode(node) {
    if (node.nodeType === Node.TEXT_NODE) {
      if (!node.parentElement || skipped(node.parentElement, true)) return;
      const next = translated(node.nodeValue);
      if (next !== null) { ORIGINAL.set(node, node.nodeValue); node.nodeValue = next; }
      return;
    }
    if (node.nodeType !== Node.ELEMENT_NODE) return;
    translateAttributes(node);
    const walker = document.createTreeWalker(node, NodeFilter.SHOW_TEXT | NodeFilter.SHOW_ELEMENT);
    let current = walker.nextNode();
    while (current) {
      if (current.nodeType === Node.TEXT_NODE) translateNode(current);
      else translateAttributes(current);
      current = walker.nextNode();
    }
  }

  window.localizeWholePage = function () {
    if (Object.keys(window.localization).length) translateNode(document.body);
  };

  // ---- one observer drives A1111's update callbacks and keeps new DOM translated
  function onMutations(mutations) {
    if (Object.keys(window.localization).length) {
      for (const m of mutations) {
        if (m.type === "characterData") translateNode(m.target);
        for (const added of m.addedNodes || []) translateNode(added);
        if (m.type === "attributes" && m.target.nodeType === Node.ELEMENT_NODE) translateNode(m.target);
      }
    }
    run(callbacks.update, mutations);
    clearTimeout(afterTimer);
    afterTimer = setTimeout(() => run(callbacks.after), 200);
    if (!loadedFired && document.querySelector("#tabs")) {
      loadedFired = true;
      run(callbacks.loaded);
    }
    const tab = get_uiCurrentTab();
    if (tab && tab !== currentTab) {
      currentTab = tab;
      run(callbacks.tab);
    }
  }

  function addAssets(page) {
    for (const href of page.css || []) {
      const link = document.createElement("link");
      link.rel = "stylesheet";
      link.href = href;
      document.head.appendChild(link);
    }
    for (const src of page.javascript || []) {
      const script = document.createElement("script");
      script.src = src;
      script.async = false; // keep the extensions' order
      if (src.split("?")[0].endsWith(".mjs")) script.type = "module";
      document.head.appendChild(script);
    }
  }

  function start() {
    new MutationObserver(onMutations).observe(document.body, {
      childList: true, subtree: true, characterData: true, attributes: true,
      attributeFilter: ["title", "placeholder", "aria-label"],
    });
    localizeWholePage();
  }

  fetch("webui-ext/page.json", { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : {}))
    .catch(() => ({}))
    .then((page) => {
      window.localization = page.localization || {};
      window.opts = page.opts || {};
      if (window.localization.rtl) document.documentElement.setAttribute("dir", "rtl");
      document.documentElement.dataset.localization = page.localization_name || "None";
      addAssets(page);
      if (document.body) start();
      else document.addEventListener("DOMContentLoaded", start);
      run(callbacks.options);
    });
})();
