"""The two hashing towers and the container that holds them, by name.

- ImageHasher: an image backbone by its ecosystem name (a torchvision builder, timm:NAME; ResNet-18
  by default; cmh/models/image_backbones.py) or CLIP's vision tower, its classifier replaced by
  Linear(width, bits) and tanh (linear for an objective that asks for it).
- TextHasher: a `transformers` encoder, the [CLS] feature (or a masked mean; CLIP: its projected
  end-of-text embedding), Linear(hidden, bits), tanh.
- BowHasher: an MLP on bag-of-words counts (the DCMH-style text tower).
- CrossModalHasher: one module holding both towers (one state_dict, one optimizer).

    from models import ModelConfig, build_model
    model, tokenizer = build_model(ModelConfig(bits=32))        # ResNet-18 + BERT-base
    model, tokenizer, cfg = load_model(torch.load(...), device)  # a checkpoint alone

`ModelConfig` is saved inside every checkpoint; with it the checkpoint alone rebuilds the model,
with no network and no model folder. The code is in cmh/models/ (hashers.py: these classes;
heads.py: the tower modules; image_backbones.py, text_encoders.py, clip_towers.py: the
registered towers, chosen by name; tower_registry.py: how to add one).
"""

from cmh.models.hashers import CrossModalHasher, ModelConfig, build_model, load_model  # noqa: F401
from cmh.models.heads import BowHasher, HashHead, ImageHasher, TextHasher  # noqa: F401
from cmh.models.text_encoders import TINY_BERT, tokenizer_from_json, train_wordpiece  # noqa: F401
from cmh.models.tower_registry import Tower, register_tower, tower_names  # noqa: F401
from cmh.utils.torch_ops import binarize  # noqa: F401  (codes are the ±1 signs of the outputs)
