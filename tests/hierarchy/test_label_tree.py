"""The label tree reader (`xtune.data.hierarchy`) on valid and broken trees, and label paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xtune.data.hierarchy import LabelTree, path_ancestor_matrix, read_label_tree
from xtune.data.readers import DataError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_paths_file_level_table_and_edge_table_give_the_same_tree(tmp_path):
    paths = write(tmp_path, "tree.txt", "城乡建设/住房/物业\n城乡建设/住房/拆迁\n\n交通/道路\n")
    levels = write(
        tmp_path, "tree.csv", "一级,二级,三级\n城乡建设,住房,物业\n城乡建设,住房,拆迁\n交通,道路,\n"
    )
    edges = write(
        tmp_path, "edges.tsv",
        "parent\tchild\n城乡建设\t住房\n住房\t物业\n住房\t拆迁\n\t交通\n交通\t道路\n",
    )  # fmt: skip
    trees = [read_label_tree(p, "/") for p in (paths, levels, edges)]
    for tree in trees:
        assert set(tree.nodes) == {
            "城乡建设", "城乡建设/住房", "城乡建设/住房/物业", "城乡建设/住房/拆迁", "交通",
            "交通/道路",
        }  # fmt: skip
        assert tree.ancestors("城乡建设/住房/物业") == [
            "城乡建设",
            "城乡建设/住房",
            "城乡建设/住房/物业",
        ]


def test_resolve_full_paths_unique_names_and_early_stops():
    tree = LabelTree.from_paths(["a/b/c", "a/d", "e/其他", "a/其他"], "/")
    assert tree.resolve("a/b") == "a/b"  # a path may stop early
    assert tree.resolve("c") == "a/b/c"
    with pytest.raises(ValueError, match="contradicts the label hierarchy: 'c' is not under 'a'"):
        tree.resolve("a/c")
    with pytest.raises(ValueError, match="names 2 nodes"):
        tree.resolve("其他")
    with pytest.raises(ValueError, match="not in the label hierarchy"):
        tree.resolve("zzz")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("cycle.csv", "parent,child\na,b\nb,c\nc,a\n", r"row \d: a cycle"),
        ("self.csv", "parent,child\na,a\n", "row 1: 'a' is its own parent"),
        ("two.csv", "parent,child\na,x\nb,x\n", "row 2: 'x' has a second parent 'b' .row 1"),
        ("gap.csv", "l1,l2,l3\na,,c\n", "row 1: an empty level before a filled one"),
        ("slash.csv", "l1,l2\na,b/c\n", "row 1: the name 'b/c' holds the path separator"),
        ("empty.txt", "a//b\n", "line 1: label path 'a//b' has an empty level"),
    ],
)
def test_broken_trees_are_one_error_naming_file_and_row(tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    with pytest.raises(DataError, match=message) as caught:
        read_label_tree(path, "/")
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_ancestor_matrix_of_paths():
    labels = ["a", "b", "a/x", "a/x/y"]
    expected = [[1, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [1, 0, 1, 1]]
    np.testing.assert_array_equal(path_ancestor_matrix(labels, "/"), expected)


@pytest.mark.skipif(not (SHARED / "teddycup2020").is_dir(), reason="needs ../shared/data")
def test_real_taxonomies_read_as_they_are():
    teddy = read_label_tree(SHARED / "teddycup2020" / "taxonomy_3level_517.csv", "/")
    depths = [teddy.depth(node) for node in teddy.nodes]
    assert [depths.count(level) for level in range(3)] == [15, 118, 517]
    with pytest.raises(DataError, match="row 5: the name '林学/林业工程' holds the path separator"):
        read_label_tree(SHARED / "csl_hierarchical" / "taxonomy.tsv", "/")
    csl = read_label_tree(SHARED / "csl_hierarchical" / "taxonomy.tsv", ">")
    assert sum(csl.depth(node) == 1 for node in csl.nodes) == 67
    assert csl.resolve("军事学>军事学") == "军事学>军事学"
