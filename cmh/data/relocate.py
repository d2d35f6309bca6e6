"""``python data.py relocate --data DIR``: point a prepared folder that was moved at its images
again, without preparing it anew.

The manifest's image paths are relative to the prepared folder (``../iaprtc12/images/...``), and
summary.json records where the folder was prepared (``prepared_at``). Relocating rewrites every
path so that it names the same image file from the folder's new place: each path is resolved
against ``--from`` (default: ``prepared_at``) and made relative to where the folder is now. The
first image must exist from the new place (checked before anything is written); the manifest and
summary.json are replaced atomically, under the folder's writer lock.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cmh.utils.atomic_io import write_text_atomic
from cmh.utils.errors import UserError
from cmh.utils.folder_lock import folder_lock


def relocate(root: str | Path, old: str | Path | None = None) -> int:
    """Rewrite ``root``'s image paths from its old place (``old`` or summary's prepared_at);
    returns the number of paths rewritten."""
    root = Path(root)
    summary_path, manifest_path = root / "summary.json", root / "manifest.jsonl"
    if not summary_path.is_file() or not manifest_path.is_file():
        raise UserError(f"--data {root} is not a prepared dataset (no summary.json or manifest.jsonl)")
    with folder_lock(root, "relocating a prepared folder"):
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        old = Path(old or summary.get("prepared_at") or "")
        if not str(old) or str(old) == ".":
            raise UserError(f"{summary_path} does not say where the folder was prepared; pass --from OLD_DIR")
        now = root.resolve()
        items = [json.loads(line) for line in manifest_path.read_text(encoding="utf-8").splitlines() if line]
        moved = 0
        for item in items:
            if isinstance(item["image"], dict):  # held in the folder's own array: moves with it
                continue
            target = os.path.normpath(old / item["image"])
            item["image"] = Path(os.path.relpath(target, now)).as_posix()
            moved += 1
        first = next((it for it in items if not isinstance(it["image"], dict)), None)
        if first is not None and not (now / first["image"]).exists():
            raise UserError(
                f"relocating {root} from {old}: item {first['id']}'s image would be "
                f"{os.path.normpath(now / first['image'])}, which does not exist; pass --from with "
                "the folder's old place, or prepare the data again (nothing was changed)"
            )
        lines = "".join(json.dumps(it, ensure_ascii=False) + "\n" for it in items)
        write_text_atomic(manifest_path, lines)
        summary["prepared_at"] = str(now)
        write_text_atomic(summary_path, json.dumps(summary, indent=1) + "\n")
    return moved
