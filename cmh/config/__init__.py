"""cmh.config: train.py's one configuration: flags, defaults, recipes and refusals.

    train_flags     train.py's flags in their groups, the reference's defaults and the demo's
    recipes         named sets of training settings (--recipe) and the image normalisations
    argument_checks refusals of impossible flag combinations, before any work starts
"""
