"""Small MATLAB files of the circulated layouts, written for tests (no real file is available).

MATLAB v7.3 (HDF5 with the MATLAB header block, axes reversed, ``MATLAB_class`` attributes, cells
as object references), plain h5py files written from Python (axes as stored) and v5 files
(scipy.io.savemat). Used by tests/data/test_mat_files.py and tests/data/test_mat_prepare.py.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import scipy.io

# NHWC -> the layout (MATLAB order)
TO_LAYOUT = {"NHWC": (0, 1, 2, 3), "NCHW": (0, 3, 1, 2), "HWCN": (1, 2, 3, 0), "CHWN": (3, 1, 2, 0)}
MATLAB_CLASS = {"uint8": "uint8", "int32": "int32", "float64": "double", "float32": "single"}
MAT_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5"


def _v73_value(
    group: h5py.Group, key: str | None, value: object, column: bool = True
) -> h5py.Dataset:
    """One variable as MATLAB -v7.3 writes it: str -> 1 x L char (uint16), a 'U' array ->
    char matrix, list -> cell (N x 1 at the top, 1 x K nested) of references into #refs#,
    a 2-D object array -> an R x K cell,
    numeric -> axes reversed; every dataset with its MATLAB_class. ``key`` None: a fresh
    name in the group (named once the elements of a cell exist)."""
    refs = group.file.require_group("#refs#")
    if isinstance(value, list):
        targets = [_v73_value(refs, None, v, column=False).ref for v in value]
        key = key or f"r{len(group)}"
        shape = (1, len(value)) if column else (len(value), 1)  # h5py order of N x 1 / 1 x K
        dataset = group.create_dataset(key, shape, dtype=h5py.ref_dtype)
        for i, target in enumerate(targets):
            dataset[(0, i) if column else (i, 0)] = target
        dataset.attrs["MATLAB_class"] = np.bytes_("cell")
        return dataset
    if isinstance(value, np.ndarray) and value.dtype == object:  # an R x K cell
        targets = [[_v73_value(refs, None, v).ref for v in row] for row in value]
        dataset = group.create_dataset(key, value.shape[::-1], dtype=h5py.ref_dtype)
        for (i, j), target in np.ndenumerate(np.array(targets, dtype=object)):
            dataset[j, i] = target
        dataset.attrs["MATLAB_class"] = np.bytes_("cell")
        return dataset
    key = key or f"r{len(group)}"
    if isinstance(value, str) and not value:
        # MATLAB stores an empty array as its dimensions (here a 1 x 0 char) plus a flag
        dataset = group.create_dataset(key, data=np.array([1, 0], np.uint64))
        dataset.attrs["MATLAB_empty"] = np.uint8(1)
        dataset.attrs["MATLAB_class"] = np.bytes_("char")
        return dataset
    if isinstance(value, str) or np.asarray(value).dtype.kind == "U":
        rows = [value] if isinstance(value, str) else list(value)
        codes = np.array([[ord(ch) for ch in row] for row in rows], dtype=np.uint16)
        dataset = group.create_dataset(key, data=codes.T)
        dataset.attrs["MATLAB_class"] = np.bytes_("char")
        return dataset
    dataset = group.create_dataset(key, data=np.asarray(value).T)
    dataset.attrs["MATLAB_class"] = np.bytes_(MATLAB_CLASS[np.asarray(value).dtype.name])
    return dataset


def write_v73(path: Path, variables: dict[str, object]) -> Path:
    """A MATLAB v7.3 file: 512-byte user block with the MATLAB text header, then HDF5."""
    with h5py.File(path, "w", userblock_size=512) as file:
        for key, value in variables.items():
            _v73_value(file, key, value)
    with open(path, "r+b") as raw:
        raw.write(MAT_HEADER)
    return path


def write_h5(path: Path, variables: dict[str, np.ndarray]) -> Path:
    """A plain h5py file written from Python: no header, no attributes, axes as given."""
    with h5py.File(path, "w") as file:
        for key, value in variables.items():
            file[key] = value
    return path


def write_v5(path: Path, variables: dict[str, object]) -> Path:
    """A v5 file (scipy.io.savemat): object arrays become cells, 'U' arrays char matrices."""
    scipy.io.savemat(path, variables)
    return path


def cell(values: list, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A MATLAB cell for savemat (N x 1 unless ``shape``); nested lists become 1 x K cells."""
    out = np.empty(shape or (len(values), 1), dtype=object)
    for i, value in enumerate(values):
        out.flat[i] = cell(value, (1, len(value))) if isinstance(value, list) else value
    return out


WRITERS = {"v73": write_v73, "h5py": write_h5, "v5": write_v5}
