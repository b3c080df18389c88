def register(api):
    def build(ui):
        raise ValueError("tab builder failed on purpose")

    api.tab("Broken tab", build, elem_id="tab_broken_ui")
