"""cmh.config: train.py's one configuration: flags, defaults, recipes and refusals.

    train_flags     train.py's flags in their groups; the layered defaults (defaults.toml)
    recipes         named sets of training settings (--recipe), read from recipes/NAME.toml
    argument_checks refusals of impossible flag combinations, before any work starts
    typed           the typed configuration: a dataclass of an entry point's flags
"""
