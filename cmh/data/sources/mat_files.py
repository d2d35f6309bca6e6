"""MATLAB ``.mat`` containers, read the same way whatever wrote them.

Two containers circulate: v7.3 files are HDF5 (read with h5py) and v5/v7 files are read with
:func:`scipy.io.loadmat`. Every array comes back in **MATLAB order**: h5py shows a file
written by MATLAB with its axes reversed (an H x W x C x N image array is (N, C, W, H)), so
those axes are reversed back. A file is taken as MATLAB-written when it starts with the MATLAB
text header or the dataset carries a ``MATLAB_class`` attribute; a plain h5py file (written
from Python) keeps its axes as stored. Either way the caller finds the item axis by the length
the arrays of a set share (:mod:`cmh.data.sources.mat_sets`), never by a fixed transpose.

Strings: v5 char matrices (rows padded with spaces), cell arrays (object arrays, nested for
several captions per item), v7.3 char arrays (uint16 code units) and cells (object
references), and plain HDF5 string datasets. Image arrays of an HDF5 file are never loaded
whole: :meth:`LazyArray.slices` reads one slice of items at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import scipy.io
import scipy.sparse

from cmh.utils.errors import UserError

TEXT_CLASSES = ("char", "cell", "string")
H5_HIDDEN = ("#refs#", "#subsystem#")  # MATLAB's own groups, not variables
MATLAB_HEADER = b"MATLAB"  # a v7.3 file's 512-byte user block starts with this text

Cell = str | list  # a cell element: a string, or a list of them (several captions)


@dataclass(eq=False)
class LazyArray:
    """A numeric array of a .mat file (MATLAB order), read in slices along one axis.

    ``data`` holds a v5 array (already in memory); for HDF5 it is None and every call to
    :meth:`slices` opens the file and reads only the slice it yields.
    """

    path: Path
    key: str
    shape: tuple[int, ...]
    dtype: np.dtype
    reversed_axes: bool  # HDF5 written by MATLAB: h5py axes are MATLAB's, reversed
    data: np.ndarray | None = None

    @property
    def name(self) -> str:
        """``file:key``, as error messages name it."""
        return f"{self.path}:{self.key}"

    def slices(self, axis: int, size: int) -> Iterator[np.ndarray]:
        """Consecutive blocks of at most ``size`` along ``axis`` (MATLAB order), in order."""
        if size < 1:
            raise ValueError(f"slice size must be >= 1, got {size}")
        total = self.shape[axis]
        if self.data is not None:
            for start in range(0, total, size):
                index = [slice(None)] * self.data.ndim
                index[axis] = slice(start, min(start + size, total))
                yield self.data[tuple(index)]
            return
        with h5py.File(self.path, "r") as file:
            dataset = file[self.key]
            raw_axis = dataset.ndim - 1 - axis if self.reversed_axes else axis
            for start in range(0, total, size):
                index = [slice(None)] * dataset.ndim
                index[raw_axis] = slice(start, min(start + size, total))
                block = dataset[tuple(index)]
                yield block.transpose() if self.reversed_axes else block


def _attr_text(obj: h5py.HLObject, name: str) -> str:
    """An HDF5 attribute as text ('' when absent)."""
    value = obj.attrs.get(name, b"")
    return value.decode() if isinstance(value, bytes | np.bytes_) else str(value)


def _char_rows(codes: np.ndarray) -> list[str]:
    """Rows of a char matrix of code units (uint16 UTF-16 or uint8), padding stripped."""
    codes = np.atleast_2d(codes)
    return [
        row.astype("<u2").tobytes().decode("utf-16-le", errors="replace").strip(" \x00")
        for row in codes
    ]


def _one_or_many(rows: list[str]) -> Cell:
    """A char value: one string, or a list when it holds several rows."""
    return rows[0] if len(rows) == 1 else rows


def _grid_items(
    cells: np.ndarray, convert: Callable[[object], Cell], n_items: int | None
) -> list[Cell]:
    """A cell array (MATLAB order) as one entry per item, each element through ``convert``:
    1 x N or N x 1 flattened (row 0 of a 1 x N cell), an N x K cell as N lists of strings,
    K x N (items on axis 1) when ``n_items`` says so."""
    grid = np.empty(cells.shape, dtype=object)
    for index, value in np.ndenumerate(cells):
        grid[index] = convert(value)
    if grid.ndim != 2 or 1 in grid.shape:
        return list(grid.reshape(-1))
    if n_items is not None and grid.shape[1] == n_items and grid.shape[0] != n_items:
        grid = grid.T
    return [_flat_strings(list(row)) for row in grid]


def _flat_strings(values: list[Cell]) -> list[str]:
    """Nested cell contents flattened to a list of strings."""
    out: list[str] = []
    for value in values:
        out.extend([value] if isinstance(value, str) else _flat_strings(value))
    return out


def _v5_cell(value: object) -> Cell:
    """One element of a loadmat cell: a char array, a nested cell, or an empty array."""
    array = np.asarray(value)
    if array.dtype == object:
        return _flat_strings([_v5_cell(v) for v in array.reshape(-1)])
    if array.dtype.kind in "US":
        rows = [str(s).strip(" \x00") for s in array.reshape(-1)]
        return _one_or_many(rows) if rows else ""
    raise TypeError(f"a cell holds {array.dtype} values, not text")


class MatFile:
    """One open .mat file, v7.3 (HDF5) or v5/v7; use as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such file")
        self.hdf5 = h5py.is_hdf5(self.path)
        self._h5: h5py.File | None = None
        self._v5: dict[str, tuple[tuple[int, ...], str]] = {}
        self._loaded: dict[str, np.ndarray] = {}
        if self.hdf5:
            with open(self.path, "rb") as raw:
                self.matlab_header = raw.read(len(MATLAB_HEADER)) == MATLAB_HEADER
            try:
                self._h5 = h5py.File(self.path, "r")
            except OSError as exc:
                raise UserError(f"{self.path}: unreadable HDF5 (v7.3) file ({exc})") from None
            return
        self.matlab_header = False  # only meaningful for HDF5
        try:
            self._v5 = {name: (shape, cls) for name, shape, cls in scipy.io.whosmat(self.path)}
        except Exception as exc:  # scipy raises several types for a file it cannot parse
            raise UserError(f"{self.path}: not a MATLAB .mat file ({exc})") from None

    def __enter__(self) -> MatFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HDF5 handle (v5 files hold none)."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    @property
    def kind(self) -> str:
        """'v7.3 (HDF5)' or 'v5'."""
        return "v7.3 (HDF5)" if self.hdf5 else "v5"

    def keys(self) -> list[str]:
        """Variable names, sorted (MATLAB's internal HDF5 groups left out)."""
        if self._h5 is not None:
            return sorted(k for k in self._h5 if k not in H5_HIDDEN)
        return sorted(self._v5)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def find(self, candidates: Sequence[str], what: str = "") -> str:
        """The first of ``candidates`` that the file holds; UserError listing the keys found."""
        for key in candidates:
            if key in self:
                return key
        wanted = " or ".join(candidates)
        raise UserError(
            f"{self.path}: no {f'{what} key ({wanted})' if what else f'key {wanted}'}; "
            f"keys found: {', '.join(self.keys()) or 'none'}"
        )

    def _node(self, key: str) -> h5py.Dataset | h5py.Group:
        """The HDF5 object of a variable; UserError listing the keys if it is absent."""
        assert self._h5 is not None
        if key not in self:
            self.find([key])
        return self._h5[key]

    def reversed_axes(self, key: str) -> bool:
        """Whether h5py shows this variable with MATLAB's axes reversed (v5: never)."""
        return self._h5 is not None and self._reversed(self._node(key))

    def _reversed(self, node: h5py.HLObject) -> bool:
        """An HDF5 object written by MATLAB (header or ``MATLAB_class``): axes reversed."""
        return self.matlab_header or "MATLAB_class" in node.attrs

    def order_note(self, key: str) -> str:
        """How the axes of ``key`` were read, for the summary."""
        if not self.hdf5:
            return "v5, MATLAB order"
        if self.reversed_axes(key):
            return "v7.3 (HDF5) written by MATLAB, h5py axes reversed to MATLAB order"
        return "HDF5 without MATLAB header, axes as stored"

    def shape(self, key: str) -> tuple[int, ...]:
        """Shape in MATLAB order, read without loading the data."""
        if self._h5 is None:
            self.find([key])
            return self._v5[key][0]
        node = self._node(key)
        if isinstance(node, h5py.Group) and "MATLAB_sparse" in node.attrs:
            return (int(node.attrs["MATLAB_sparse"]), len(node["jc"]) - 1)
        if not isinstance(node, h5py.Dataset):
            raise UserError(f"{self.path}:{key} is a MATLAB struct or object, not an array")
        return tuple(reversed(node.shape)) if self.reversed_axes(key) else tuple(node.shape)

    def is_text(self, key: str) -> bool:
        """Whether ``key`` holds text (char, cell or string data) rather than numbers."""
        if self._h5 is None:
            self.find([key])
            return self._v5[key][1] in TEXT_CLASSES
        node = self._node(key)
        if _attr_text(node, "MATLAB_class") in TEXT_CLASSES:
            return True
        return isinstance(node, h5py.Dataset) and (
            h5py.check_string_dtype(node.dtype) is not None
            or h5py.check_ref_dtype(node.dtype) is not None
        )

    def _load_v5(self, key: str) -> np.ndarray:
        """One v5 variable, loaded once."""
        if key not in self._loaded:
            self.find([key])
            self._loaded[key] = scipy.io.loadmat(self.path, variable_names=[key])[key]
        return self._loaded[key]

    def array(self, key: str) -> LazyArray:
        """A numeric variable as a :class:`LazyArray` (HDF5: nothing read yet)."""
        if self.is_text(key):
            raise UserError(f"{self.path}:{key} holds text, expected a numeric array")
        if self._h5 is None:
            data = self.read(key)
            return LazyArray(self.path, key, data.shape, data.dtype, False, data)
        node = self._node(key)
        if not isinstance(node, h5py.Dataset):
            raise UserError(f"{self.path}:{key} is not a dense array (sparse or struct)")
        return LazyArray(self.path, key, self.shape(key), node.dtype, self.reversed_axes(key))

    def read(self, key: str) -> np.ndarray:
        """A numeric variable, whole, dense, in MATLAB order (sparse matrices densified)."""
        if self.is_text(key):
            raise UserError(f"{self.path}:{key} holds text, expected a numeric array")
        if self._h5 is None:
            value = self._load_v5(key)
            if scipy.sparse.issparse(value):
                return value.toarray()
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
                raise UserError(f"{self.path}:{key} is not a numeric array")
            return value
        node = self._node(key)
        if isinstance(node, h5py.Group) and "MATLAB_sparse" in node.attrs:
            rows, cols = self.shape(key)
            data = node["data"][()] if "data" in node else np.ones(len(node["ir"]), np.uint8)
            csc = (data, node["ir"][()], node["jc"][()])
            return scipy.sparse.csc_matrix(csc, shape=(rows, cols)).toarray()
        value = node[()]
        return value.transpose() if self.reversed_axes(key) else value

    def strings(self, key: str, n_items: int | None = None) -> list[Cell]:
        """Text of ``key``, one entry per item: a string, or a list of strings (several
        captions). A char matrix gives one string per row; a cell one entry per element;
        ``n_items`` picks the item axis of a 2-D cell whose sides both exceed 1."""
        if not self.is_text(key):
            raise UserError(f"{self.path}:{key} holds numbers, expected text (char or cell)")
        try:
            if self._h5 is None:
                value = self._load_v5(key)
                if value.dtype != object:
                    return [str(s).strip(" \x00") for s in value.reshape(-1)]
                return _grid_items(value, _v5_cell, n_items)
            node = self._node(key)
            if _attr_text(node, "MATLAB_class") == "string" or not isinstance(node, h5py.Dataset):
                raise UserError(
                    f"{self.path}:{key} is a MATLAB string object or struct; save it as a char "
                    "matrix or a cell of char (cellstr) instead"
                )
            return self._h5_strings(node, n_items)
        except (TypeError, ValueError, KeyError) as exc:
            raise UserError(f"{self.path}:{key}: unreadable text ({exc})") from None

    def _h5_strings(self, node: h5py.Dataset, n_items: int | None) -> list[Cell]:
        """Top-level HDF5 text: a cell of references, a string dataset or a char matrix."""
        reverse = self._reversed(node)
        if node.attrs.get("MATLAB_empty", 0):
            return []
        if h5py.check_ref_dtype(node.dtype) is not None:
            refs = node[()].transpose() if reverse else node[()]
            return _grid_items(refs, self._h5_cell, n_items)
        if h5py.check_string_dtype(node.dtype) is not None:
            return [s.strip(" \x00") for s in node.asstr()[()].reshape(-1)]
        codes = node[()].transpose() if reverse else node[()]
        return _char_rows(codes)

    def _h5_cell(self, ref: h5py.Reference) -> Cell:
        """The value an HDF5 cell element refers to: a string, or a list of strings."""
        assert self._h5 is not None
        if not ref:
            return ""
        node = self._h5[ref]
        if not isinstance(node, h5py.Dataset):
            raise TypeError("a cell element is a struct or object, not text")
        if node.attrs.get("MATLAB_empty", 0):
            return ""
        if h5py.check_ref_dtype(node.dtype) is not None:
            return _flat_strings([self._h5_cell(r) for r in node[()].reshape(-1)])
        if h5py.check_string_dtype(node.dtype) is not None:
            return _one_or_many([s.strip(" \x00") for s in node.asstr()[()].reshape(-1)])
        if node.dtype.kind not in "ui":
            raise TypeError(f"a cell element holds {node.dtype} values, not text")
        codes = node[()]
        return _one_or_many(_char_rows(codes.transpose() if self._reversed(node) else codes))
