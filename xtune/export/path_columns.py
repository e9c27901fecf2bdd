"""`xtune predict`'s columns for a task with hierarchical labels (`hierarchy` in its record).

`predicted_paths`: the predicted labels no other predicted label lies under (the paths the
prediction ends at), most probable first, joined with `|` — what the export's `paths` output
holds; `level_1` ... `level_<n>`: the names along the most probable of them ("" below its
end), as the export's `level_labels`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def path_columns(
    hierarchy: dict[str, Any],
    labels: list[str],
    probabilities: np.ndarray,
    predictions: np.ndarray,
    errors: list[str],
) -> pd.DataFrame:
    separator, levels = hierarchy["separator"], int(hierarchy["levels"])
    prefixes = [label + separator for label in labels]
    # under[i, j]: label j lies under label i
    under = np.asarray([[other.startswith(p) for other in labels] for p in prefixes], bool)
    paths, names = [], [[] for _ in range(levels)]
    for row_probabilities, row_predictions, error in zip(
        probabilities, predictions, errors, strict=True
    ):
        chosen = row_predictions > 0
        ends = [i for i in np.argsort(-row_probabilities, kind="stable")
                if chosen[i] and not (under[i] & chosen).any()]  # fmt: skip
        paths.append("" if error else "|".join(labels[i] for i in ends))
        parts = labels[ends[0]].split(separator) if ends and not error else []
        for level in range(levels):
            names[level].append(parts[level] if level < len(parts) else "")
    columns = {"predicted_paths": paths}
    columns.update({f"level_{level + 1}": names[level] for level in range(levels)})
    return pd.DataFrame(columns)
