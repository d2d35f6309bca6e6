"""A small synthetic dataset in the raw IAPR TC-12 / SAIAPR TC-12 layout, for offline CPU runs.

``python demo.py --out DIR`` (or ``generate_demo(DIR)``) writes, with NN = ID // 1000 as 2 digits:

- ``DIR/iaprtc12/images/NN/ID.jpg``: RGB JPEG, ``image_size`` x ``image_size``;
- ``DIR/iaprtc12/annotations_complete_eng/NN/ID.eng``: cp1252 annotation in the real layout;
- ``DIR/saiapr_tc-12/NN/labels.txt``: ``image_id segment_id label_id``, one line per segment;
- ``DIR/saiapr_tc-12/wlist.txt``: ``label_id<TAB>label_name`` (some concepts never occur);
- ``DIR/demo_info.json``: the generation parameters (marks DIR as a demo folder).

Each scene is a sky (or none), a ground layout and 1-4 objects of 24 kinds, each kind with its
own shape and colour family. Scenes, labels and captions are sampled first with one
``np.random.default_rng(seed)`` (:func:`sample_scenes`, no drawing); rendering is a pure
function of the scene and (seed, id). The same seed gives byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from errors import UserError

RGB = tuple[int, int, int]
BLACK, WHITE, GLASS, DARK = (25, 25, 25), (245, 245, 245), (165, 205, 235), (60, 45, 35)
TRUNK, SKIN, GREEN, GREY = (105, 65, 30), (230, 185, 150), (45, 140, 55), (110, 110, 115)

# label id -> name: ids are the 1-based positions in the sorted list of the 255 real SAIAPR
# names (not the official numbering, which is unknown): non-contiguous, like the real ids.
WLIST = {3: "airplane", 20: "bicycle", 21: "bird", 22: "boat", 29: "building", 31: "bus",
         32: "bush", 41: "car", 51: "church", 56: "cloud", 73: "dog", 84: "fence", 88: "flag",
         96: "flower", 105: "giraffe", 110: "grass", 111: "ground", 113: "group-of-persons",
         126: "horse", 127: "house", 144: "lighthouse", 160: "mountain", 166: "ocean",
         172: "palm", 176: "person", 178: "piano", 189: "river", 191: "rock",
         196: "sand-beach", 208: "sky-blue", 209: "sky-light", 210: "sky-night",
         211: "sky-red-sunset-dusk", 214: "snow", 220: "street", 221: "sun", 233: "trees",
         237: "umbrella", 244: "volcano", 252: "window"}  # fmt: skip
LABEL_IDS = {name: label_id for label_id, name in WLIST.items()}


