// Test extension JS: proves extension scripts load after the A1111 helpers and see opts.
onUiLoaded(function () {
  document.body.dataset.nativeAllHooks = "loaded:" + (typeof opts === "object" ? "opts" : "no-opts");
});
