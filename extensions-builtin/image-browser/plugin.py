"""Image Browser tab: browse outputs/ with each image's generation parameters.

Search words match the prompt, negative prompt, model and file name; a number (or ``seed:N``)
finds images with that seed, ``model:name`` filters by model. "Send to txt2img" fills the
txt2img tab from the image's parameters, "Send to img2img" puts the image and its parameters
into img2img; "Delete" asks for confirmation and only ever deletes files inside the outputs folder.
"""
import html

from .library import ALL, SORTS, BrowserError, Library

PAGE = 120  # images shown per search (newest first by default)


def _status(note: str) -> str:
    return f'<div id="image_browser_count">{html.escape(note)}</div>'


def register(api):
    api.tab("Image Browser", build, elem_id="tab_image_browser")


def build(ui):
    import gradio as gr  # only the tab builder needs Gradio

    library = Library(ui.app.outputs_dir)
    with gr.Row():
        folder = gr.Dropdown(library.folders(), value=ALL, label="Folder", elem_id="image_browser_folder", scale=1)
        query = gr.Textbox(label="Search", placeholder="Prompt, model or seed", elem_id="image_browser_search",
                           scale=3)
        sort = gr.Dropdown(list(SORTS), value=SORTS[0], label="Sort by", elem_id="image_browser_sort", scale=1)
        search = gr.Button("Search", variant="primary", elem_id="image_browser_search_button", scale=0,
                           min_width=100)
    status = gr.HTML("", elem_id="image_browser_status")
    with gr.Row():
        with gr.Column(scale=3):
            gallery = gr.Gallery(label="Images", columns=6, height=520, object_fit="contain", allow_preview=True,
                                 elem_id="image_browser_gallery", interactive=False)
        with gr.Column(scale=2):
            info = gr.Textbox(label="Generation info", lines=8, interactive=False, elem_id="image_browser_info")
            path = gr.Textbox(label="File", interactive=False, elem_id="image_browser_path")
            with gr.Row():
                send = gr.Button("Send to txt2img", elem_id="image_browser_send_to_txt2img")
                send_img2img = gr.Button("Send to img2img", elem_id="image_browser_send_to_img2img")
                delete = gr.Button("Delete", variant="stop", elem_id="image_browser_delete")
            with gr.Row(visible=False) as confirm_row:
                confirm = gr.Button("Confirm delete", variant="stop", elem_id="image_browser_confirm_delete")
                cancel = gr.Button("Cancel", elem_id="image_browser_cancel")
    shown = gr.State([])  # paths of the images in the gallery, in order
    picked = gr.Image(type="pil", visible=False, elem_id="image_browser_image")  # what "Send to img2img" sends

    def do_search(folder_, query_, sort_):
        found = library.search(query_, folder_, sort_)
        page = found[:PAGE]
        items = [(str(e.path), f"{e.seed if e.seed is not None else ''} {e.path.name}".strip()) for e in page]
        more = f" (showing the first {PAGE})" if len(found) > PAGE else ""
        note = f"{len(found)} image(s){more}." if found else "No image matches."
        return (items, [str(e.path) for e in page], _status(note), gr.update(choices=library.folders()), "", "",
                gr.update(visible=False))

    outputs = [gallery, shown, status, folder, info, path, confirm_row]
    search.click(do_search, [folder, query, sort], outputs, show_progress="hidden", api_visibility="private")
    query.submit(do_search, [folder, query, sort], outputs, show_progress="hidden", api_visibility="private")

    def pick(evt: gr.SelectData, paths):
        if not paths or evt.index is None or evt.index >= len(paths):
            return gr.update(), gr.update(), gr.update(visible=False), gr.update()
        entry = next((e for e in library.scan() if str(e.path) == paths[evt.index]), None)
        return (entry.infotext if entry else ""), paths[evt.index], gr.update(visible=False), paths[evt.index]

    gallery.select(pick, [shown], [info, path, confirm_row, picked], show_progress="hidden",
                   api_visibility="private")
    ui.send_to_txt2img(send, info)
    ui.send_to_img2img(send_img2img, picked, info)
    delete.click(lambda p: gr.update(visible=bool(p)), path, confirm_row, show_progress="hidden",
                 api_visibility="private")
    cancel.click(lambda: gr.update(visible=False), None, confirm_row, show_progress="hidden",
                 api_visibility="private")

    def do_delete(target, folder_, query_, sort_):
        try:
            gone = library.delete(target)
        except BrowserError as exc:
            return (gr.update(), gr.update(), f'<div class="error-box">{html.escape(str(exc))}</div>',
                    gr.update(), gr.update(), gr.update(), gr.update(visible=False))
        items, paths, _, folders, _, _, row = do_search(folder_, query_, sort_)
        return items, paths, _status(f"Deleted {gone.name}."), folders, "", "", row

    confirm.click(do_delete, [path, folder, query, sort], outputs, show_progress="hidden",
                  api_visibility="private")
