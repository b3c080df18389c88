// OpenPose editor (what PoseX / sd-webui-openpose-editor do): 18-keypoint skeletons on a canvas.
// Add people, drag joints (drag with Shift to move a whole person), set the canvas size, put a
// picture underneath, import/export the OpenPose JSON those editors use. The JSON is mirrored
// into the hidden textbox #pose_editor_json so the Python side renders the map and sends it
// to a ControlNet unit; the drawing here uses the same limb colours as the rendered map.
(() => {
  const LIMBS = [[1, 2], [1, 5], [2, 3], [3, 4], [5, 6], [6, 7], [1, 8], [8, 9], [9, 10], [1, 11], [11, 12],
    [12, 13], [1, 0], [0, 14], [14, 16], [0, 15], [15, 17]];
  const COLORS = [[255, 0, 0], [255, 85, 0], [255, 170, 0], [255, 255, 0], [170, 255, 0], [85, 255, 0],
    [0, 255, 0], [0, 255, 85], [0, 255, 170], [0, 255, 255], [0, 170, 255], [0, 85, 255], [0, 0, 255],
    [85, 0, 255], [170, 0, 255], [255, 0, 255], [255, 0, 170], [255, 0, 85]];
  // A standing person in a 512x512 frame (x, y), COCO-18 order.
  const TEMPLATE = [[256, 96], [256, 150], [206, 150], [186, 226], [176, 296], [306, 150], [326, 226],
    [336, 296], [226, 290], [222, 380], [220, 466], [286, 290], [290, 380], [292, 466], [244, 84],
    [268, 84], [230, 92], [282, 92]];
  const HIT_RADIUS = 12; // display pixels

  const state = { width: 512, height: 512, people: [], background: null, drag: null };

  const rgb = (c, k = 1) => `rgb(${Math.round(c[0] * k)},${Math.round(c[1] * k)},${Math.round(c[2] * k)})`;

  function addPerson() {
    const n = state.people.length;
    const sx = state.width / 512, sy = state.height / 512;
    const shift = [0, -140, 140, -210, 210][n % 5]; // side by side, so a new person does not hide the last
    state.people.push(TEMPLATE.map(([x, y]) => [Math.min(state.width - 1, Math.max(0, (x + shift) * sx)), y * sy]));
    changed();
  }

  function toJSON() {
    return {
      canvas_width: state.width, canvas_height: state.height,
      people: state.people.map((pts) => ({
        pose_keypoints_2d: pts.flatMap((p) => (p ? [Math.round(p[0] * 100) / 100, Math.round(p[1] * 100) / 100, 1] : [0, 0, 0])),
        face_keypoints_2d: null, hand_left_keypoints_2d: null, hand_right_keypoints_2d: null,
      })),
    };
  }

  function fromJSON(data) {
    if (Array.isArray(data)) data = data[0];
    const w = parseInt(data.canvas_width || 512, 10), h = parseInt(data.canvas_height || 512, 10);
    if (!(w >= 8 && h >= 8 && w <= 4096 && h <= 4096)) throw new Error(`canvas size ${w}x${h} is outside 8..4096`);
    const all = (data.people || []).flatMap((p) => p.pose_keypoints_2d || []);
    const normalized = all.length > 0 && all.every((v) => Math.abs(v) <= 1);
    state.width = w; state.height = h;
    state.people = (data.people || []).map((p) => {
      const flat = p.pose_keypoints_2d || [];
      const pts = [];
      for (let k = 0; k < 18; k++) {
        const [x, y, c] = flat.slice(3 * k, 3 * k + 3);
        pts.push(c > 0 ? (normalized ? [x * w, y * h] : [x, y]) : null);
      }
      return pts;
    });
    changed();
  }

  let root = null, canvas = null, status = null, sizeW = null, sizeH = null, bgImage = null;

  function draw() {
    if (!canvas) return;
    canvas.width = state.width; canvas.height = state.height;
    const g = canvas.getContext("2d");
    g.fillStyle = "#000"; g.fillRect(0, 0, state.width, state.height);
    if (bgImage) { g.globalAlpha = 0.5; g.drawImage(bgImage, 0, 0, state.width, state.height); g.globalAlpha = 1; }
    for (const pts of state.people) {
      LIMBS.forEach(([a, b], i) => {
        if (!pts[a] || !pts[b]) return;
        g.strokeStyle = rgb(COLORS[i], 0.6); g.lineWidth = 8; g.lineCap = "round";
        g.beginPath(); g.moveTo(pts[a][0], pts[a][1]); g.lineTo(pts[b][0], pts[b][1]); g.stroke();
      });
      pts.forEach((p, i) => {
        if (!p) return;
        g.fillStyle = rgb(COLORS[i]); g.beginPath(); g.arc(p[0], p[1], 4, 0, 2 * Math.PI); g.fill();
      });
    }
    if (status) status.textContent = `${state.people.length} ${state.people.length === 1 ? "person" : "people"}, ` +
      `${state.width}x${state.height}. Drag a joint to move it; Shift+drag moves the whole person.`;
  }

  function sync() {
    const box = document.querySelector("#pose_editor_json textarea, #pose_editor_json input");
    if (!box) return;
    box.value = JSON.stringify(toJSON());
    box.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function changed() { draw(); sync(); }

  function toCanvas(event) {
    const r = canvas.getBoundingClientRect();
    return [(event.clientX - r.left) * state.width / r.width, (event.clientY - r.top) * state.height / r.height,
      state.width / r.width];
  }

  function hit(x, y, scale) {
    let best = null, bestD = HIT_RADIUS * scale;
    state.people.forEach((pts, person) => pts.forEach((p, joint) => {
      if (!p) return;
      const d = Math.hypot(p[0] - x, p[1] - y);
      if (d <= bestD) { best = { person, joint }; bestD = d; }
    }));
    return best;
  }

  function onDown(event) {
    const [x, y, scale] = toCanvas(event);
    const found = hit(x, y, scale);
    if (!found) return;
    state.drag = { ...found, whole: event.shiftKey, last: [x, y] };
    canvas.setPointerCapture(event.pointerId);
    event.preventDefault();
  }

  function onMove(event) {
    if (!state.drag) return;
    const [x, y] = toCanvas(event);
    const clamp = (v, hi) => Math.min(hi - 1, Math.max(0, v));
    const pts = state.people[state.drag.person];
    if (state.drag.whole) {
      const dx = x - state.drag.last[0], dy = y - state.drag.last[1];
      pts.forEach((p, i) => { if (p) pts[i] = [clamp(p[0] + dx, state.width), clamp(p[1] + dy, state.height)]; });
    } else {
      pts[state.drag.joint] = [clamp(x, state.width), clamp(y, state.height)];
    }
    state.drag.last = [x, y];
    draw();
  }

  function onUp() {
    if (!state.drag) return;
    state.drag = null;
    sync();
  }

  function button(label, id, action) {
    const b = document.createElement("button");
    b.type = "button"; b.textContent = label; b.id = id; b.className = "pose-editor-button";
    b.addEventListener("click", action);
    return b;
  }

  const CSS = `.pose-editor-canvas{max-width:100%;max-height:560px;border:1px solid #666;touch-action:none;cursor:crosshair}
.pose-editor-bar{display:flex;flex-wrap:wrap;gap:6px;align-items:center;margin-bottom:6px}
.pose-editor-bar input[type=number]{width:5.5em}.pose-editor-status{font-size:0.85em;opacity:0.8}`;

  function build(container) {
    if (!document.getElementById("pose_editor_css")) {
      document.head.append(Object.assign(document.createElement("style"), { id: "pose_editor_css", textContent: CSS }));
    }
    root = container;
    root.innerHTML = "";
    const bar = document.createElement("div"); bar.className = "pose-editor-bar";
    sizeW = Object.assign(document.createElement("input"), { type: "number", min: 64, max: 4096, step: 8, value: state.width, id: "pose_width", title: "Canvas width" });
    sizeH = Object.assign(document.createElement("input"), { type: "number", min: 64, max: 4096, step: 8, value: state.height, id: "pose_height", title: "Canvas height" });
    const resize = button("Set size", "pose_set_size", () => {
      const w = parseInt(sizeW.value, 10), h = parseInt(sizeH.value, 10);
      if (!(w >= 64 && h >= 64 && w <= 4096 && h <= 4096)) { status.textContent = "Size must be 64..4096."; return; }
      const kx = w / state.width, ky = h / state.height;
      state.people = state.people.map((pts) => pts.map((p) => (p ? [p[0] * kx, p[1] * ky] : null)));
      state.width = w; state.height = h; changed();
    });
    const bgInput = Object.assign(document.createElement("input"), { type: "file", accept: "image/*", id: "pose_background_file" });
    bgInput.style.display = "none";
    bgInput.addEventListener("change", () => {
      const file = bgInput.files[0]; if (!file) return;
      const img = new Image();
      img.onload = () => { bgImage = img; draw(); };
      img.src = URL.createObjectURL(file);
    });
    const jsonInput = Object.assign(document.createElement("input"), { type: "file", accept: ".json,application/json", id: "pose_import_file" });
    jsonInput.style.display = "none";
    jsonInput.addEventListener("change", async () => {
      const file = jsonInput.files[0]; if (!file) return;
      try { fromJSON(JSON.parse(await file.text())); } catch (err) { status.textContent = `Could not import: ${err.message}`; }
      jsonInput.value = "";
    });
    bar.append(
      button("Add person", "pose_add_person", addPerson),
      button("Remove last", "pose_remove_person", () => { state.people.pop(); changed(); }),
      document.createTextNode(" W "), sizeW, document.createTextNode(" H "), sizeH, resize,
      button("Background…", "pose_background", () => bgInput.click()),
      button("Clear background", "pose_clear_background", () => { bgImage = null; draw(); }),
      button("Import JSON…", "pose_import", () => jsonInput.click()),
      button("Export JSON", "pose_export", () => {
        const blob = new Blob([JSON.stringify(toJSON(), null, 2)], { type: "application/json" });
        const a = Object.assign(document.createElement("a"), { href: URL.createObjectURL(blob), download: "pose.json" });
        document.body.append(a); a.click(); a.remove();
      }),
      bgInput, jsonInput,
    );
    canvas = document.createElement("canvas"); canvas.id = "pose_canvas"; canvas.className = "pose-editor-canvas";
    canvas.addEventListener("pointerdown", onDown);
    canvas.addEventListener("pointermove", onMove);
    canvas.addEventListener("pointerup", onUp);
    canvas.addEventListener("pointercancel", onUp);
    status = document.createElement("div"); status.className = "pose-editor-status"; status.id = "pose_status";
    root.append(bar, canvas, status);
    if (state.people.length === 0) addPerson(); else changed();
  }

  // Gradio renders the tab lazily and may re-render it: (re)build whenever the root appears empty.
  setInterval(() => {
    const el = document.getElementById("pose_editor_root");
    if (el && (el !== root || !el.querySelector("canvas"))) build(el);
  }, 300);

  window.poseEditor = { state, toJSON, fromJSON, addPerson, redraw: changed };
})();
