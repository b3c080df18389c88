// Ctrl+Enter (or Cmd+Enter) generates from anywhere on the txt2img or img2img tab, as in A1111.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
  for (const id of ["#txt2img_generate", "#img2img_generate"]) {
    const button = document.querySelector(id);
    if (button && button.offsetParent !== null) {  // only the tab on screen
      event.preventDefault();
      button.click();
      return;
    }
  }
});
