"""A trained LoRA through the Networks code: listed without a restart, `<lora:name:1>` in a prompt
draws what the trainer's own network draws, and a LoRA left patched in by a job is not trained into."""
import numpy as np
import torch

from webui.generation.request import GenerationRequest
from webui.training.lora import network_from_file
from webui.training.lora_run import text_encoders
from webui.training.settings import LoraSettings


def lora_settings(folder, name, steps):
    return LoraSettings(name=name, data_dir=str(folder), max_train_steps=steps, batch_size=2, unet_lr=2e-3,
                        text_encoder_lr=2e-3, save_every_n_steps=0, sample_every_n_steps=0,
                        save_precision="float", overwrite=True).validate()


def pixels(ctx, prompt):
    request = GenerationRequest(prompt=prompt, seed=3, steps=2, width=64, height=64, save_images=False)
    return np.asarray(ctx.queue.run(request, timeout=120).images[0], dtype=np.int16)


def trained_pixels(ctx, name, prompt):
    """The picture with the trainer's in-memory network hooked in (what the Train tab's samples show)."""
    model = ctx.models.current()
    net = network_from_file(ctx.paths.lora_dir / f"{name}.safetensors", model.arch, model.pipe.unet,
                            text_encoders(model.pipe)).attach()
    try:
        return pixels(ctx, prompt)
    finally:
        net.detach()


def train(ctx, folder, name, steps):
    submitted = ctx.training.submit_lora(lora_settings(folder, name, steps), ctx.queue)
    assert submitted.job.wait(300).state == "done"


def test_trained_lora_is_listed_and_drawn_by_its_prompt_tag(app_context, train_folder):
    ctx = app_context
    prompt = "a red circle on a blue background"
    base = pixels(ctx, prompt)
    unet = ctx.models.current().pipe.unet
    base_weights = {k: v.clone() for k, v in unet.state_dict().items()}

    train(ctx, train_folder, "t-net", 4)
    assert ctx.networks.find_lora("t-net") is not None  # refreshed by the job: the cards list it
    hooked = trained_pixels(ctx, "t-net", prompt)
    tagged = pixels(ctx, f"{prompt} <lora:t-net:1>")
    assert np.abs(tagged - base).max() > 8, "the trained LoRA must change the picture"
    # Networks merges up @ down into the weights; the trainer adds it in the forward: same picture.
    assert np.abs(tagged - hooked).max() <= 2

    # The tag's job leaves t-net patched into the weights (A1111's design). The next run trains
    # against the checkpoint's own weights, and its new file replaces the old one in the tag.
    assert any(not torch.equal(v, base_weights[k]) for k, v in unet.state_dict().items())
    train(ctx, train_folder, "t-net", 8)
    assert all(torch.equal(v, base_weights[k]) for k, v in unet.state_dict().items())
    retagged = pixels(ctx, f"{prompt} <lora:t-net:1>")
    assert np.abs(retagged - tagged).max() > 0, "the overwritten file must be read again"
    assert np.abs(retagged - trained_pixels(ctx, "t-net", prompt)).max() <= 2
