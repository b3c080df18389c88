"""Networks: VAE swap, the LoRA / LyCORIS weight patcher (one module per type in `kinds/`),
textual-inversion embeddings and hypernetworks, for the generation core and the UI / API.

Rooms: `files` (folders, hashes, previews, user metadata, safe loading), `tags` (`<lora:...>`
parsing), `keys` (network key -> diffusers module), `kinds/` (delta formula per type),
`network` (load + bind a LoRA-family file), `patcher` (apply / restore weights), `embeddings`,
`hypernetworks`, `vae`, `manager` (all of it for one app and one job).

Public entry points: `manager.NetworkManager` (the app's object; `activate(...)` around a job),
`network.load_network` / `network_from_state_dict` + `network.bind` + `patcher.WeightPatcher`
(load and apply a LoRA file directly, e.g. from the training room).

This package's `__init__` imports nothing heavy: `tags` is used by request validation.
"""
