"""A checkpoint swap keeps the user's image size unless it still is the previous model's default."""
from webui.ui.model_status import size_after_swap


def _kept(result) -> bool:
    return all(isinstance(v, dict) and v.get("__type__") == "update" and "value" not in v for v in result)


def test_users_size_survives_a_swap():
    assert _kept(size_after_swap(512, 1024, 832, 1216))
    assert _kept(size_after_swap(512, 1024, 512, 768))


def test_the_previous_default_follows_the_new_model():
    assert size_after_swap(512, 1024, 512, 512) == (1024, 1024)
    assert size_after_swap(1024, 64, 1024.0, 1024.0) == (64, 64)


def test_nothing_loaded_before_keeps_the_size():
    assert _kept(size_after_swap(None, 1024, 512, 512))
