// A1111's keys, from anywhere on the txt2img or img2img tab: Ctrl+Enter (or Cmd+Enter) generates,
// Alt+Enter skips and Esc interrupts the running job. Each clicks the button the page shows for it,
// so a key does nothing a click could not (Interrupt / Skip show only while a job runs).
function shortcutTarget(event) {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) return "generate";
  if (event.key === "Enter" && event.altKey) return "skip";
  if (event.key === "Escape") return "interrupt";
  return null;
}
document.addEventListener("keydown", (event) => {
  const action = shortcutTarget(event);
  if (!action) return;
  for (const tab of ["txt2img", "img2img"]) {
    const button = document.getElementById(`${tab}_${action}`);
    if (button && button.offsetParent !== null) {  // only the tab on screen, only while it is shown
      event.preventDefault();
      button.click();
      return;
    }
  }
});

// Icon buttons get a tooltip and an accessible name (A1111's titles): Gradio's Button has no
// title parameter, and a bare glyph says nothing to a screen reader or a new user.
const ICON_TITLES = {
  refresh_sd_model_checkpoint: "Refresh the checkpoint list",
  refresh_sd_vae: "Refresh the VAE list",
  txt2img_random_seed: "Set seed to -1, which will cause a new random number to be used every time",
  img2img_random_seed: "Set seed to -1, which will cause a new random number to be used every time",
  txt2img_reuse_seed: "Reuse seed from the selected image",
  img2img_reuse_seed: "Reuse seed from the selected image",
  txt2img_res_switch_btn: "Switch width/height",
  img2img_res_switch_btn: "Switch width/height",
  txt2img_paste: "Read generation parameters from prompt into user interface",
  img2img_paste: "Read generation parameters from prompt into user interface",
};
function labelIcons() {
  // A name too long for its box (a phone, a long checkpoint file name) is readable on hover / long press.
  for (const input of document.querySelectorAll("#quicksettings input[role=combobox]")) {
    if (input.title !== input.value) input.title = input.value;
  }
  for (const [id, title] of Object.entries(ICON_TITLES)) {
    const button = document.getElementById(id);
    // Once per element: a localization pack translates the title afterwards, which must stay.
    if (button && !button.dataset.iconTitled) {
      button.dataset.iconTitled = "1";
      button.title = title;
      button.setAttribute("aria-label", title);
    }
  }
}
new MutationObserver(labelIcons).observe(document.documentElement, {childList: true, subtree: true});

// On a narrow screen the output column sits far below Generate: bring the progress and the result
// into view when a job starts, or the user sees nothing change (A1111 users tap and wait).
document.addEventListener("click", (event) => {
  if (window.innerWidth > 700) return;
  for (const tab of ["txt2img", "img2img"]) {
    if (event.target.closest && event.target.closest(`#${tab}_generate`)) {
      const target = document.getElementById(`${tab}_progress_html`) || document.getElementById(`${tab}_gallery`);
      if (target) setTimeout(() => target.scrollIntoView({behavior: "smooth", block: "start"}), 100);
    }
  }
}, true);
