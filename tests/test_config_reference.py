"""docs/config-keys.md is generated from the schema's dataclasses and their comments
(`xtune.config_reference`): it matches the schema, describes every key, and an undescribed
field is an error."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO
from xtune import components, config_reference
from xtune.config_reference import COMMAND, SECTIONS, descriptions, field_comments, reference

DOC = REPO / "docs" / "config-keys.md"

# A schema with one field per way of describing it, and one field described nowhere.
TINY_SOURCE = '''
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Tiny:
    """A synthetic section."""

    # Described above,
    # over two lines.
    above: int = 1
    beside: str = "x"  # described beside
    spread: list[int] = field(
        default_factory=list,  # described inside a multi-line default
    )
    # A comment cut off from the next field by a blank line describes nothing.

    bare: bool = False
'''


def tiny_schema() -> type:
    namespace: dict = {"__name__": "tiny_schema"}
    exec(compile(TINY_SOURCE, "tiny_schema.py", "exec", dont_inherit=True), namespace)
    return namespace["Tiny"]


def table_rows(text: str) -> dict[str, list[str]]:
    """Key -> the row's cells, for every table row of the reference (`|` escaped as `\\|`)."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0].strip("`")] = cells
    return rows


def test_the_committed_reference_is_the_generated_one():
    assert DOC.read_text(encoding="utf-8") == reference(), (
        f"docs/config-keys.md differs from the schema; regenerate it: {COMMAND}"
    )


def test_every_field_of_every_section_has_a_described_row():
    rows = table_rows(reference())
    for section in SECTIONS:
        for item in dataclasses.fields(section.schema):
            key = f"{section.prefix}.{item.name}" if section.prefix else item.name
            assert key in rows, f"{key} missing from the reference"
            key_cell, type_cell, default_cell, description = rows[key]
            assert type_cell and default_cell, key
            assert len(description) > 10, f"{key}: no description"


def test_component_keys_name_the_xtune_list_kind_of_their_arguments():
    rows = table_rows(reference())
    for key, kinds in config_reference.LIST_KINDS.items():
        assert set(kinds) <= set(components.KINDS), key
        for kind in kinds:
            assert f"`xtune list {kind}`" in rows[key][3]


def test_comments_above_beside_and_inside_a_field_describe_it():
    assert field_comments(TINY_SOURCE, "Tiny") == {
        "above": "Described above, over two lines.",
        "beside": "described beside",
        "spread": "described inside a multi-line default",
        "bare": "",
    }


def test_a_field_without_a_comment_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"Tiny: no description for bare;.*config_reference"):
        descriptions(tiny_schema(), TINY_SOURCE)


def test_the_generator_fails_on_an_undescribed_schema_field():
    """Strip the comment of one real field: generating the reference fails, naming it."""
    source = (REPO / "xtune" / "config_schema.py").read_text(encoding="utf-8")
    line = next(line for line in source.splitlines() if line.startswith("    batch_size: int"))
    undescribed = source.replace(line, line.partition("  #")[0])
    assert undescribed != source
    with pytest.raises(ValueError, match="TrainingConfig: no description for batch_size"):
        reference(undescribed)


def test_python_m_prints_the_reference():
    printed = subprocess.run(
        [sys.executable, "-m", "xtune.config_reference"],
        cwd=REPO,
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=True,
    ).stdout
    assert printed == DOC.read_text(encoding="utf-8")
