"""The data side of cross-modal hashing on IAPR TC-12: prepare a dataset once, then read it.

    python data.py prepare --iapr-root DIR --saiapr-root DIR --out DATA   # the raw archives
    python data.py prepare --lists DIR --images DIR --annotations DIR --out DATA  # iapr_* lists
    python data.py prepare --twemoji DIR --emojilib DIR --out DATA  # Twemoji + emojilib packages
    python data.py demo --out DIR      # a generated dataset in the raw layout, prepared
    python data.py relocate --data DATA   # a prepared folder moved away from its images

The prepare step (:mod:`cmh.data.prepare`) reads the input once, drops unusable items (with
reasons), draws the seeded split (:mod:`cmh.data.splits`: queries first, the rest is the database,
train and val drawn from it) and writes one prepared folder (:mod:`cmh.data.prepared_folder`): manifest,
labels, split, vocabulary, summary. Everything else reads only that folder:

- :func:`load_prepared` -> :class:`PreparedData` (checked: the split's protocol included);
- :class:`HashingDataset`: one split as dicts {"image", "input_ids", "labels", "bow", "index"},
  captions tokenized once; :func:`collate` and :func:`make_loader` (a seeded DataLoader);
- :func:`image_transform`: the training (resize, random crop, flip) and evaluation transforms.
"""

from __future__ import annotations

import sys

from cmh.data import prepare as prepare_step
from cmh.data.dataset import (  # noqa: F401  (this module's public API)
    HashingDataset,
    collate,
    make_loader,
    sparse_bows,
    tokenize_captions,
)
from cmh.data.image_transforms import IMAGENET_MEAN, IMAGENET_STD, image_transform, load_image  # noqa: F401
from cmh.data.prepare_flags import ensure_demo, parse_args, run_demo  # noqa: F401
from cmh.data.prepared_folder import PreparedData, load_prepared  # noqa: F401
from cmh.data.relocate import relocate
from cmh.data.splits import SPLITS  # noqa: F401
from cmh.utils.errors import UserError


def main(argv: list[str] | None = None) -> int:
    """Entry point; a UserError prints ``error: MESSAGE`` to stderr and returns 2."""
    args = parse_args(argv)
    try:
        if args.command == "prepare":
            prepare_step.prepare(args)
        elif args.command == "relocate":
            n = relocate(args.data, args.old)
            print(f"{args.data}: {n} image paths now point at the images from where it is")
        else:
            run_demo(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
