"""Ablation grids: a YAML spec expanded into seeded runs, a resumable runner, markdown reports."""

from xtune.grid.spec import GridSpec, load_grid

__all__ = ["GridSpec", "load_grid"]
