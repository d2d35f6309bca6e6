"""cmh.models: the hashing towers (ModelConfig, build_model) and their backbones.

    hashers          ModelConfig, CrossModalHasher, build_model / load_model (towers by name)
    heads            the hash head and the tower modules: image, text, bag-of-words
    tower_registry   towers by name: register, look up, --image-model KIND:NAME
    image_backbones  image towers "torchvision" (builder names) and "timm" (timm:NAME)
    text_encoders    text towers "bert" (tiny, hub, folder) and "bow"; tokenizers
    clip_towers      image and text towers "clip" from one CLIP model (--backbone clip)
    model_sources    where pretrained towers come from, checked before any work
"""
