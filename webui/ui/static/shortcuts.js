// Ctrl+Enter (or Cmd+Enter) generates from anywhere on the txt2img tab, as in A1111.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
  const button = document.querySelector("#txt2img_generate");
  if (button && button.offsetParent !== null) {
    event.preventDefault();
    button.click();
  }
});
