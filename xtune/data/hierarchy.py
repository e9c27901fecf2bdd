"""`LabelTree`: a label hierarchy (`data.label_hierarchy`), its file formats, and label paths.

A node is named by its full path, the names from the root joined with
`data.label_path_separator` (`城乡建设/住房/物业`), so equal names under different parents
(`其他`) stay different nodes. A tree file is one of:

- one path per line (`.txt`, `.paths`): `城乡建设/住房/物业`; blank lines are ignored;
- a CSV/TSV/XLSX table whose header is `parent`, `child`: one edge a row, plain names (each
  name then has one parent; a cycle or a second parent is an error);
- any other CSV/TSV/XLSX table: one path a row, a level a column, root first (e.g. the 2020
  appeal taxonomy's `一级分类,二级分类,三级分类`, CSL's `category, discipline`); empty trailing
  cells end a path early.

Every problem is one `DataError` naming the file and the row.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from xtune.data.readers import DataError, decode, load_table

PATH_FILE_SUFFIXES = (".txt", ".paths")
EDGE_HEADER = ("parent", "child")


class LabelTree:
    """Nodes by full path (root first, in order of appearance) and each node's parent.

    ```python
    tree = LabelTree.from_paths(["a/b/c", "a/d"], "/")
    tree.nodes                 # ['a', 'a/b', 'a/b/c', 'a/d']
    tree.ancestors("a/b/c")    # ['a', 'a/b', 'a/b/c']
    tree.resolve("c")          # 'a/b/c'  (a name found once in the tree)
    ```
    """

    def __init__(self, separator: str, source: str = ""):
        if not separator:
            raise ValueError("the label path separator must not be empty")
        self.separator = separator
        self.source = source
        self.parent: dict[str, str | None] = {}
        self.by_name: dict[str, list[str]] = {}

    # ------------------------------------------------------------ building

    @classmethod
    def from_paths(cls, paths: Iterable[str], separator: str, source: str = "") -> LabelTree:
        """The tree that a list of label paths implies (each prefix is a node)."""
        tree = cls(separator, source)
        for path in paths:
            tree.add_path(tree.split(path))
        return tree

    def split(self, path: str) -> list[str]:
        names = [name.strip() for name in str(path).split(self.separator)]
        if not names or any(not name for name in names):
            raise ValueError(f"label path {path!r} has an empty level")
        return names

    def add_path(self, names: list[str]) -> str:
        """Add the nodes of one path (names root first); returns the last node's path."""
        parent = None
        for name in names:
            if self.separator in name:
                raise ValueError(
                    f"the name {name!r} holds the path separator {self.separator!r} (set "
                    "data.label_path_separator to a string no label name holds)"
                )
            node = name if parent is None else f"{parent}{self.separator}{name}"
            if node not in self.parent:
                self.parent[node] = parent
                self.by_name.setdefault(name, []).append(node)
            parent = node
        return parent or ""

    # ------------------------------------------------------------ reading paths

    @property
    def nodes(self) -> list[str]:
        return list(self.parent)

    def __contains__(self, node: object) -> bool:
        return node in self.parent

    def __len__(self) -> int:
        return len(self.parent)

    def depth(self, node: str) -> int:
        """0 for a root."""
        return node.count(self.separator)

    def ancestors(self, node: str) -> list[str]:
        """The node's path, root first, the node itself last."""
        chain = []
        current: str | None = node
        while current is not None:
            chain.append(current)
            current = self.parent[current]
        return chain[::-1]

    def resolve(self, label: str) -> str:
        """The node a data label names: a full path, or a name found once in the tree.
        ValueError (a one-line reason) for a path that contradicts the tree or a name that is
        not in it, or in it more than once."""
        if label in self.parent:
            return label
        if self.separator in label:
            names = self.split(label)
            known = ""
            for name in names:
                node = name if not known else f"{known}{self.separator}{name}"
                if node not in self.parent:
                    where = f"under {known!r}" if known else "as a first-level label"
                    children = self.children_of(known or None)
                    shown = ", ".join(repr(c.rsplit(self.separator, 1)[-1]) for c in children[:8])
                    more = ", ..." if len(children) > 8 else ""
                    raise ValueError(
                        f"label path {label!r} contradicts the label hierarchy: {name!r} is not "
                        f"{where} (it has: {shown or 'nothing'}{more})"
                    )
                known = node
            return known
        found = self.by_name.get(label, [])
        if len(found) == 1:
            return found[0]
        if not found:
            raise ValueError(f"label {label!r} is not in the label hierarchy")
        raise ValueError(
            f"label {label!r} names {len(found)} nodes of the label hierarchy "
            f"({', '.join(map(repr, found[:4]))}); write its full path"
        )

    def children_of(self, node: str | None) -> list[str]:
        return [child for child, parent in self.parent.items() if parent == node]

    def levels(self, node: str) -> list[str]:
        """The names along the node's path, root first."""
        return node.split(self.separator)


# ---------------------------------------------------------------- arrays of a label list


def path_ancestor_matrix(labels: list[str], separator: str) -> np.ndarray:
    """`A[i, j] = 1` when label `j` is label `i` or one of its ancestors (by path prefix);
    labels whose ancestors are not in `labels` simply have fewer ones."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), np.float32)
    for i, label in enumerate(labels):
        names = label.split(separator)
        for depth in range(1, len(names) + 1):
            j = index.get(separator.join(names[:depth]))
            if j is not None:
                matrix[i, j] = 1.0
    return matrix


def path_depths(labels: list[str], separator: str) -> np.ndarray:
    """Each label's level, 0 for a first-level label."""
    return np.asarray([label.count(separator) for label in labels], np.int32)


# ---------------------------------------------------------------- tree files


def read_label_tree(path: Path, separator: str, encoding: str = "utf-8") -> LabelTree:
    """A tree file (formats in the module docstring); DataError naming the file and row."""
    if not path.is_file():
        raise DataError(f"{path}: label hierarchy file (data.label_hierarchy) not found")
    tree = LabelTree(separator, str(path))
    if path.suffix.lower() in PATH_FILE_SUFFIXES:
        text = decode(path, path.read_bytes(), encoding, "strict")
        rows = [(number, [line]) for number, line in enumerate(text.splitlines(), 1)]
        add_rows(tree, path, [(n, r) for n, r in rows if r[0].strip()], "line", split=True)
    else:
        table = load_table(path, encoding=encoding)
        header = [str(name).strip().lower() for name in table.frame.columns]
        cells = [
            (
                row,
                ["" if value is None or value != value else str(value).strip() for value in record],
            )
            for row, record in zip(table.rows, table.frame.itertuples(index=False), strict=True)
        ]
        if tuple(header) == EDGE_HEADER:
            add_edges(tree, path, cells)
        else:
            add_rows(tree, path, cells, "row", split=False)
    if not len(tree):
        raise DataError(f"{path}: the label hierarchy has no labels")
    return tree


def add_rows(
    tree: LabelTree, path: Path, rows: list[tuple[int, list[str]]], unit: str, split: bool
) -> None:
    """Rows of one path each: a path string (`split`) or its levels as cells."""
    for number, cells in rows:
        try:
            names = tree.split(cells[0]) if split else level_names(cells)
            tree.add_path(names)
        except ValueError as error:
            raise DataError(f"{path}: {unit} {number}: {error}") from None


def level_names(cells: list[str]) -> list[str]:
    """A level-column row's names; empty cells may only end it."""
    names = list(cells)
    while names and not names[-1]:
        names.pop()
    if not names:
        raise ValueError("no label in the row")
    if any(not name for name in names):
        raise ValueError(
            f"an empty level before a filled one ({' | '.join(cells)}); a path may only stop early"
        )
    return names


def add_edges(tree: LabelTree, path: Path, rows: list[tuple[int, list[str]]]) -> None:
    """A parent,child table: each name one parent; no cycle; a parent missing as a child is a
    root."""
    parent_of: dict[str, tuple[str, int]] = {}
    order: list[str] = []
    for row, cells in rows:
        parent, child = (cells + ["", ""])[:2]
        if not child:
            raise DataError(f"{path}: row {row}: empty child")
        if child == parent:
            raise DataError(f"{path}: row {row}: {child!r} is its own parent (a cycle)")
        if child in parent_of and parent_of[child][0] != parent:
            first_parent, first_row = parent_of[child]
            raise DataError(
                f"{path}: row {row}: {child!r} has a second parent {parent!r} (row {first_row} "
                f"gave {first_parent!r}); a label tree gives each label one parent"
            )
        parent_of[child] = (parent, row)
        order += [name for name in (parent, child) if name and name not in order]
    for name in order:
        chain, current = [], name
        while current:
            if current in chain:
                raise DataError(
                    f"{path}: row {parent_of[name][1]}: a cycle: "
                    f"{' -> '.join(reversed(chain + [current]))}"
                )
            chain.append(current)
            current = parent_of.get(current, ("", 0))[0]
        try:
            tree.add_path(chain[::-1])
        except ValueError as error:
            raise DataError(f"{path}: row {parent_of.get(name, ('', 0))[1]}: {error}") from None
