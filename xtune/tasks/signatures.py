"""The names of an export's signatures, and the task names that would collide with them.

A config without `tasks:` keeps the names exports always had: `serving_default` (raw
strings in), `tokenize` and `serving_token_ids`. A named task `T` gets `T`, `T_tokenize`,
`T_token_ids` and, for a bi-encoder, `T_embed` (text -> sentence vector); the first task's
also answer as `serving_default`, `tokenize` and `serving_token_ids`, and the only
bi-encoder's embedding as `embed`. So those four names, and `<task>_embed` and the like,
cannot name a task.
"""

from __future__ import annotations

SERVING_DEFAULT = "serving_default"
TOKENIZE = "tokenize"
TOKEN_IDS = "serving_token_ids"
EMBED = "embed"
SHARED_SIGNATURES = (SERVING_DEFAULT, TOKENIZE, TOKEN_IDS, EMBED)
# The suffix of a named task's signature by its role; `serve` is the task's own name.
ROLE_SUFFIXES = {"tokenize": "_tokenize", "token_ids": "_token_ids", "embed": "_embed"}


def task_signature_names(name: str, type_name: str, named: bool = True) -> dict[str, str]:
    """A task's signature names by role: `serve` (raw strings -> outputs), `tokenize`,
    `token_ids` and, for a bi-encoder, `embed`. `named` is False for the one task of a
    config without `tasks:`, which keeps today's names."""
    if not named:
        return {"serve": SERVING_DEFAULT, "tokenize": TOKENIZE, "token_ids": TOKEN_IDS}
    roles = ["tokenize", "token_ids"] + (["embed"] if type_name == "bi_encoder" else [])
    return {"serve": name, **{role: f"{name}{ROLE_SUFFIXES[role]}" for role in roles}}


def check_task_names(types: dict[str, str]) -> None:
    """ValueError ("<task>: ...") for a task named like another export signature.

    Args:
        types: the task type of each task, by task name.
    """
    taken = {name: "an export signature of every run" for name in SHARED_SIGNATURES}
    for task, type_name in types.items():
        for role, signature in task_signature_names(task, type_name).items():
            if role != "serve":
                taken[signature] = f"task {task!r}'s {role} signature"
    for task in types:
        if task in taken:
            raise ValueError(
                f"{task}: the task name is also the name of {taken[task]} ({task!r}) in the "
                f"export; rename the task (reserved: {', '.join(SHARED_SIGNATURES)}, and "
                "<task>_tokenize, <task>_token_ids, <bi-encoder task>_embed)"
            )
