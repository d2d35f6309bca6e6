"""cmh/models/clip_towers.py: the tiny CLIP, both backbones against CLIPModel's own features, pooling at
the end-of-text token, rebuild from the checkpoint strings, offline messages. All offline."""

from __future__ import annotations

import json

import pytest
import torch

import cmh.models.clip_towers as ct
from cmh.models import model_sources
from cmh.utils.errors import UserError

CAPTIONS = [
    "a red car in front of a white house; two trees on the left; blue sky;",
    "a white boat on the blue sea; a mountain in the background;",
    "two people walking on a grey street; cars parked on the right;",
    "a brown dog on green grass; a fence behind it;",
]
SIZE = 32


def features(out) -> torch.Tensor:
    """get_*_features' result: a tensor (transformers 4) or an output object (transformers 5)."""
    if isinstance(out, torch.Tensor):
        return out
    for key in ("pooler_output", "image_embeds", "text_embeds"):
        if getattr(out, key, None) is not None:
            return getattr(out, key)
    raise AssertionError(f"no features in {type(out).__name__}")


def tokens(tokenizer, captions: list[str], max_length: int = 24) -> dict:
    return tokenizer(
        captions, truncation=True, max_length=max_length, padding=True, return_tensors="pt"
    )


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, tokenizer = ct.load_clip(ct.TINY_CLIP, CAPTIONS, SIZE, 24)
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def test_tiny_clip_builds(tiny):
    model, tokenizer = tiny
    text, vision = model.config.text_config, model.config.vision_config
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads) == (64, 2, 2)
    assert (vision.image_size, vision.patch_size, model.config.projection_dim) == (SIZE, 8, 32)
    assert text.max_position_embeddings == 32  # max(24, 32)
    assert text.vocab_size == len(tokenizer)
    assert text.pad_token_id == tokenizer.pad_token_id == tokenizer.convert_tokens_to_ids("[PAD]")
    assert text.bos_token_id == tokenizer.cls_token_id == tokenizer.convert_tokens_to_ids("[CLS]")
    assert text.eos_token_id == tokenizer.sep_token_id == tokenizer.convert_tokens_to_ids("[SEP]")
    assert text.eos_token_id != ct.LEGACY_EOS_ID  # not CLIPTextModel's argmax(input_ids) rule
    ids = tokenizer("A Red Car")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["[CLS]", "a", "red", "car", "[SEP]"]


def test_tiny_tokenizer_is_deterministic(tiny):
    _, tokenizer = tiny
    again = ct.load_clip(ct.TINY_CLIP, CAPTIONS, SIZE, 24)[1]
    assert again.get_vocab() == tokenizer.get_vocab()


def test_image_backbone_matches_get_image_features(tiny, images):
    model, _ = tiny
    image, _ = ct.clip_backbones(model)
    with torch.no_grad():
        got, want = image(images), features(model.get_image_features(pixel_values=images))
    assert got.shape == (3, 32) and image.out_features == 32
    torch.testing.assert_close(got, want)


def test_text_backbone_matches_get_text_features_and_sep_by_hand(tiny):
    model, tokenizer = tiny
    _, text = ct.clip_backbones(model)
    enc = tokens(tokenizer, CAPTIONS)
    seen = {}
    hook = model.text_model.encoder.register_forward_hook(
        lambda _m, _i, out: seen.update(hidden=out.last_hidden_state)
    )
    with torch.no_grad():
        got = text(enc["input_ids"], enc["attention_mask"])
        hook.remove()
        want = features(model.get_text_features(**enc))
        normed = model.text_model.final_layer_norm(seen["hidden"])  # CLIP's last step
        sep = (enc["input_ids"] == tokenizer.sep_token_id).int().argmax(1)
        by_hand = model.text_projection(normed[torch.arange(len(CAPTIONS)), sep])
    assert got.shape == (4, 32) and text.out_features == 32 and text.max_positions == 32
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got, by_hand)


def test_pooling_is_not_at_cls_nor_largest_id(tiny):
    """Fails if the text tower pooled [CLS] (position 0) or used the legacy argmax(ids) rule."""
    model, tokenizer = tiny
    _, text = ct.clip_backbones(model)
    enc = tokens(tokenizer, CAPTIONS)
    rows = torch.arange(len(CAPTIONS))
    with torch.no_grad():
        got = text(enc["input_ids"], enc["attention_mask"])
        hidden = model.text_model(**enc).last_hidden_state
        at_cls = model.text_projection(hidden[:, 0])
        at_largest = model.text_projection(hidden[rows, enc["input_ids"].argmax(1)])
    for other in (at_cls, at_largest):
        assert (got - other).abs().amax(1).min() > 1e-3  # every caption differs


def test_padding_leaves_the_shorter_caption_alone(tiny):
    model, tokenizer = tiny
    _, text = ct.clip_backbones(model)
    short, long = "a brown dog", CAPTIONS[0]
    alone, batch = tokens(tokenizer, [short]), tokens(tokenizer, [short, long])
    assert batch["input_ids"].shape[1] > alone["input_ids"].shape[1]  # it was padded
    with torch.no_grad():
        one = text(alone["input_ids"], alone["attention_mask"])
        padded = text(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(padded[:1], one, atol=1e-5, rtol=1e-5)


def test_backbones_share_nothing_and_skip_logit_scale(tiny):
    model, _ = tiny
    image, text = ct.clip_backbones(model)
    image_ids = {id(p) for p in image.parameters()}
    text_ids = {id(p) for p in text.parameters()}
    assert not image_ids & text_ids
    assert id(model.logit_scale) not in image_ids | text_ids
    assert len(image_ids | text_ids) == len(list(model.parameters())) - 1


def test_rebuild_from_checkpoint_strings(tiny, images):
    model, tokenizer = tiny
    config_json, tokenizer_json = ct.clip_config_json(model), ct.tokenizer_to_json(tokenizer)
    assert json.loads(tokenizer_json)["special_tokens"]["sep_token"] == "[SEP]"
    torch.manual_seed(123)
    rebuilt, retok = ct.clip_from_config(config_json, tokenizer_json)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    enc, enc2 = tokens(tokenizer, CAPTIONS), tokens(retok, CAPTIONS)
    assert torch.equal(enc["input_ids"], enc2["input_ids"])
    assert torch.equal(enc["attention_mask"], enc2["attention_mask"])
    assert retok.sep_token_id == tokenizer.sep_token_id and retok.pad_token == "[PAD]"
    assert rebuilt.text_model.eos_token_id == tokenizer.sep_token_id
    (image, text), (image2, text2) = ct.clip_backbones(model), ct.clip_backbones(rebuilt)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    with torch.no_grad():
        torch.testing.assert_close(image(images), image2(images), rtol=0, atol=0)
        torch.testing.assert_close(text(ids, mask), text2(ids, mask), rtol=0, atol=0)


def test_rebuild_from_a_bare_tokenizer_json(tiny):
    _, tokenizer = tiny
    retok = ct._tokenizer_from_json(tokenizer.backend_tokenizer.to_str())
    assert retok(CAPTIONS)["input_ids"] == tokenizer(CAPTIONS)["input_ids"]
    assert retok.pad_token == "[PAD]" and retok.sep_token == "[SEP]"


def test_damaged_checkpoint_strings_are_user_errors(tiny):
    model, tokenizer = tiny
    with pytest.raises(UserError, match="--backbone clip"):
        ct.clip_from_config("{not json", ct.tokenizer_to_json(tokenizer))


@pytest.mark.parametrize("size", [36, 4, 0])
def test_tiny_image_size_must_be_a_multiple_of_8(size):
    with pytest.raises(UserError, match="--image-size"):
        ct.load_clip(ct.TINY_CLIP, CAPTIONS, size, 24)


@pytest.mark.parametrize("captions", [None, []])
def test_tiny_needs_captions(captions):
    with pytest.raises(UserError, match="--clip-model"):
        ct.load_clip(ct.TINY_CLIP, captions, SIZE, 24)


@pytest.mark.parametrize("name", ["missing-folder/clip", "no-such-org/no-such-clip-model"])
def test_unavailable_model_offline_names_the_flag(name, tmp_path, monkeypatch):
    monkeypatch.setattr(model_sources, "hub_reachable", lambda: False)
    monkeypatch.chdir(tmp_path)  # "missing-folder/clip" is not a folder here
    with pytest.raises(UserError, match="--clip-model") as err:
        ct.load_clip(name, None, ct.CLIP_IMAGE_SIZE, ct.CLIP_MAX_LENGTH)
    assert "could not load the CLIP model" in str(err.value) and "--clip-model tiny" in str(
        err.value
    )


@pytest.fixture
def clip_folder(tiny, tmp_path):
    """A local folder holding a tiny CLIPModel and a CLIP (BPE) tokenizer, as from the hub."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "c": 3, "at</w>": 4}
    vocab.update({"d": 5, "og</w>": 6, "o": 7, "g</w>": 8, "t</w>": 9, "a": 10})
    merges = [("a", "t</w>"), ("o", "g</w>")]
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    config = CLIPConfig.from_dict(json.loads(ct.clip_config_json(tiny[0])))
    text = config.text_config
    text.vocab_size, text.pad_token_id, text.bos_token_id, text.eos_token_id = 11, 1, 0, 1
    CLIPModel(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    return tmp_path


def test_local_folder_loads_and_round_trips(clip_folder, monkeypatch):
    monkeypatch.setattr(model_sources, "hub_reachable", lambda: False)
    model, tokenizer = ct.load_clip(str(clip_folder), None, SIZE, 24)
    model.eval()
    assert next(model.parameters()).dtype == torch.float32
    ids = tokenizer(["a cat", "a dog"], padding=True, return_tensors="pt")
    assert ids["input_ids"][0, 0] == 0 and ids["input_ids"][0, -1] == 1  # <|startoftext|> ... eot
    stored = json.loads(ct.tokenizer_to_json(tokenizer))["special_tokens"]
    assert stored["bos_token"] == "<|startoftext|>" and stored["eos_token"] == "<|endoftext|>"
    rebuilt, retok = ct.clip_from_config(
        ct.clip_config_json(model), ct.tokenizer_to_json(tokenizer)
    )
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    ids2 = retok(["a cat", "a dog"], padding=True, return_tensors="pt")
    assert torch.equal(ids["input_ids"], ids2["input_ids"])
    assert retok.eos_token == "<|endoftext|>" and retok.bos_token == "<|startoftext|>"
    with torch.no_grad():
        a = ct.clip_backbones(model)[1](ids["input_ids"], ids["attention_mask"])
        b = ct.clip_backbones(rebuilt)[1](ids2["input_ids"], ids2["attention_mask"])
        want = features(model.get_text_features(**ids))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, want)


def test_local_folder_image_size_must_match(clip_folder, monkeypatch):
    monkeypatch.setattr(model_sources, "hub_reachable", lambda: False)
    with pytest.raises(UserError, match=f"--image-size {SIZE}"):
        ct.load_clip(str(clip_folder), None, 64, 24)
