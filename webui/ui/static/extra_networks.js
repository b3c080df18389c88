// Extra-network cards (runs as the cards component's js_on_load; `element` is the component).
// A click inserts the card's text into the prompt box last focused on this tab (the prompt by
// default), or takes it out again when it is there already, as in A1111. The 🛠 button and
// checkpoint cards go to Python through a hidden textbox and button.
(() => {
  const state = (window.sdExtraNetworks = window.sdExtraNetworks || { active: {}, listening: false });
  if (!state.listening) {
    state.listening = true;
    document.addEventListener("focusin", (event) => {
      const box = event.target;
      if (!(box instanceof HTMLTextAreaElement)) return;
      const holder = box.closest("[id$='_prompt'], [id$='_neg_prompt']");
      if (!holder) return;
      const tab = holder.id.replace(/_(neg_)?prompt$/, "");
      state.active[tab] = holder.id;
    });
  }

  const textarea = (id) => document.querySelector(`#${id} textarea`);
  const changed = (box) => box.dispatchEvent(new Event("input", { bubbles: true }));
  const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

  function toggle(box, text) {
    if (!box || !text) return;
    let value = box.value;
    const lora = text.match(/^<(lora|hypernet):([^:>]+):[^>]*>/);
    const present = lora ? new RegExp(`\\s*<${lora[1]}:${escape(lora[2])}:[^>]*>`) : null;
    if (value.includes(text)) {
      value = value.replace(new RegExp(`\\s*${escape(text)}`), "");
    } else if (present && present.test(value)) {
      value = value.replace(present, "");
    } else {
      value = value.trim() ? `${value.replace(/\s+$/, "")} ${text}` : text;
    }
    box.value = value;
    changed(box);
  }

  function request(tab, payload) {
    const box = textarea(`${tab}_extra_networks_request`);
    const button = document.querySelector(`#${tab}_extra_networks_request_button`);
    if (!box || !button) return;
    box.value = JSON.stringify({ ...payload, nonce: Date.now() });
    changed(box);
    setTimeout(() => button.click(), 50);
  }

  element.addEventListener("click", (event) => {
    const card = event.target.closest(".extra-network-card");
    const root = event.target.closest("[data-tabname]");
    if (!card || !root) return;
    const tab = root.dataset.tabname;
    const data = card.dataset;
    if (event.target.closest(".card-edit")) {
      request(tab, { action: "edit", kind: data.kind, name: data.name });
    } else if (data.select) {
      request(tab, { action: "select", kind: data.kind, name: data.name, select: data.select });
    } else {
      toggle(textarea(state.active[tab] || `${tab}_prompt`), data.insert);
      if (data.negative) {
        const negative = textarea(`${tab}_neg_prompt`);
        if (negative && !negative.value.includes(data.negative)) toggle(negative, data.negative);
      }
    }
  });
})();
