"""cmh: the machinery of cross-modal hashing that the root scripts share.

The root holds what the project is (``data.py``, ``models.py``, ``loss.py``: each a short page
naming what it exposes) and its entry points (``train.py``, ``evaluate.py``, ``retrieve.py``,
``data.py prepare|demo``). This package holds the rest, one sub-package per responsibility; its
modules import each other and third-party libraries, never a root module. Every choice a user
makes by name comes from a registry a module adds itself to (objectives: cmh.objectives).

    config/      train.py's flags, recipes and the refusals of impossible combinations
    data/        the prepared folder, prepare, splits, loaders, transforms; sources/, caches/
    models/      the hashing towers and their backbones (torchvision, timm, transformers, CLIP)
    objectives/  what training minimises, by name: triplet, DCMH, and the registry
    engine/      the training loop, its set-up, the CUDA-graph step, schedules, torchrun
    evaluation/  encoding, Hamming metrics, curves, plots, the reference's protocol, seed tables
    retrieval/   FAISS binary indexes and what retrieve.py shows
    runs/        run folders, checkpoints, warm starts, reused benchmark runs
    utils/       the CLI parser, progress bars, devices, errors, running entry points
"""
