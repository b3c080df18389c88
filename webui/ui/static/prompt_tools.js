// The prompt row's tools (webui/ui/prompt_tools.py): tooltips for their icons, Ctrl+Up/Down attention
// editing in the prompt boxes, and the notification sound when a job's images arrive.

// Tooltips and accessible names, A1111's words (Gradio's Button has no title parameter).
const PROMPT_TOOL_TITLES = {
  clear_prompt: "Clear prompt",
  style_apply: "Apply all selected styles to prompts",
  styles_edit_button: "Edit styles",
};
function labelPromptTools() {
  for (const tab of ["txt2img", "img2img"]) {
    for (const [id, title] of Object.entries(PROMPT_TOOL_TITLES)) {
      const button = document.getElementById(`${tab}_${id}`);
      // Only unlabelled buttons (new, or re-rendered by Gradio): the localization may have translated a label.
      if (button && !button.hasAttribute("aria-label")) {
        button.title = title;
        button.setAttribute("aria-label", title);
      }
    }
  }
}

// --- Attention editing: Ctrl+Up / Ctrl+Down, as A1111's edit-attention does. ---
// The selection, else the (...) or <...> group around the cursor, else the word under it, gets its
// weight changed by a step: "red" -> "(red:1.1)" -> "(red:1.2)"; back at 1.0 the brackets go.
const ATTENTION_STEP = 0.1;  // A1111's keyedit_precision_attention
const EXTRA_STEP = 0.05;  // keyedit_precision_extra: the weight of <lora:name:w>
const WORD_DELIMITERS = ".,\\/!?%^*;:{}=`~() \t\r\n";  // A1111's keyedit_delimiters plus whitespace

function enclosingGroup(text, at, open, close) {
  // The inside of the innermost open...close around the cursor, without its ":weight".
  const before = text.slice(0, at);
  const start = before.lastIndexOf(open);
  if (start < 0 || before.lastIndexOf(close) > start) return null;
  const end = text.indexOf(close, at);
  const nextOpen = text.indexOf(open, at);
  if (end < 0 || (nextOpen >= 0 && nextOpen < end)) return null;
  const inside = text.slice(start + 1, end);
  const colon = inside.lastIndexOf(":");
  const weighted = colon >= 0 && /^\s*-?[\d.]+\s*$/.test(inside.slice(colon + 1));
  return [start + 1, start + 1 + (weighted ? colon : inside.length)];
}

function wordAt(text, at) {
  let start = at;
  let end = at;
  while (start > 0 && !WORD_DELIMITERS.includes(text[start - 1])) start--;
  while (end < text.length && !WORD_DELIMITERS.includes(text[end])) end++;
  return start < end ? [start, end] : null;
}

function formatWeight(weight) {
  weight = parseFloat(weight.toPrecision(12));  // 1.2000000000000002 -> 1.2
  return Number.isInteger(weight) ? weight.toFixed(1) : String(weight);
}

// Returns {text, start, end} (the new text and the edited words' range), or null when nothing applies.
function editAttention(text, start, end, up) {
  if (start === end) {
    const range = enclosingGroup(text, start, "<", ">") || enclosingGroup(text, start, "(", ")") || wordAt(text, start);
    if (!range) return null;
    [start, end] = range;
  }
  while (start < end && /\s/.test(text[start])) start++;
  while (end > start && /\s/.test(text[end - 1])) end--;
  if (start === end) return null;

  let close = ")";
  let step = ATTENTION_STEP;
  if (text[start - 1] === "<") {  // <lora:name:0.8>: its weight, never unwrapped
    if (text[end] !== ":") return null;
    close = ">";
    step = EXTRA_STEP;
  } else if (!(text[start - 1] === "(" && text[end] === ":")) {  // not weighted yet: as if (words:1.0)
    text = `${text.slice(0, start)}(${text.slice(start, end)}:1.0)${text.slice(end)}`;
    start += 1;
    end += 1;
  }
  const closeAt = text.indexOf(close, end + 1);
  if (closeAt < 0) return null;
  const weight = parseFloat(text.slice(end + 1, closeAt));
  if (Number.isNaN(weight)) return null;
  const shown = formatWeight(weight + (up ? step : -step));
  if (close === ")" && shown === "1.0") {  // plain words again
    return {text: text.slice(0, start - 1) + text.slice(start, end) + text.slice(closeAt + 1), start: start - 1,
            end: end - 1};
  }
  return {text: text.slice(0, end + 1) + shown + text.slice(closeAt), start, end};
}

document.addEventListener("keydown", (event) => {
  if (!(event.ctrlKey || event.metaKey) || (event.key !== "ArrowUp" && event.key !== "ArrowDown")) return;
  const box = event.target;
  // The prompt boxes of the top rows and the style editor (A1111: the toprow prompts and .prompt boxes).
  if (!box.matches || !box.matches("[id$='_toprow'] textarea, .prompt textarea")) return;
  const edited = editAttention(box.value, box.selectionStart, box.selectionEnd, event.key === "ArrowUp");
  event.preventDefault();  // Ctrl+Up would otherwise move the cursor to the start of the paragraph
  if (!edited) return;
  box.value = edited.text;
  box.setSelectionRange(edited.start, edited.end);
  box.dispatchEvent(new Event("input", {bubbles: true}));  // Gradio takes the new value from this event
});

// --- Notification sound: A1111 plays notification.mp3 (when it exists) as a job's images arrive. ---
// The hidden player (#audio_notification) has a source only when the file exists, so without one
// nothing is requested. New results are images a gallery has not shown before (opening one in the
// gallery's preview shows a known image again: no sound).
const shownResults = {};
function playOnNewResults() {
  let fresh = false;
  for (const tab of ["txt2img", "img2img", "extras"]) {
    const seen = shownResults[tab] || (shownResults[tab] = new Set());
    for (const image of document.querySelectorAll(`#${tab}_gallery img`)) {
      const src = image.getAttribute("src");
      if (src && !seen.has(src)) {
        seen.add(src);
        fresh = true;
      }
    }
  }
  if (!fresh) return;
  // Gradio's player holds two: one with the file's URL, and its waveform's copy (a blob: URL).
  const audio = Array.from(document.querySelectorAll("#audio_notification audio[src]"))
    .find((element) => !element.getAttribute("src").startsWith("blob:"));
  if (audio) {
    const level = document.querySelector("#notification_volume [data-volume]");  // the setting, in %
    audio.volume = level ? Math.min(1, Math.max(0, Number(level.dataset.volume) / 100)) : 1;
    audio.currentTime = 0;
    const playing = audio.play();
    if (playing && playing.catch) playing.catch(() => {});  // a browser may refuse; no sound is no error
  }
}

let promptToolsPending = false;
new MutationObserver(() => {
  if (promptToolsPending) return;  // one check per burst of DOM changes (progress updates come often)
  promptToolsPending = true;
  setTimeout(() => {
    promptToolsPending = false;
    labelPromptTools();
    playOnNewResults();
  }, 50);
}).observe(document.documentElement, {childList: true, subtree: true, attributes: true, attributeFilter: ["src"]});
