"""PCGrad: combine per-task gradients, projecting away the parts where tasks conflict.

Yu et al. 2020, "Gradient Surgery for Multi-Task Learning" (NeurIPS). With one shared
encoder, one task's gradient can point against another's (negative dot product) and the
summed step then helps one task at the other's cost. PCGrad takes the shared parameters'
gradient g_k of every task k as one flat vector and, for each task i, visits the other tasks
j in a random order:

    if g_i'·g_j < 0:   g_i' ← g_i' − (g_i'·g_j / ‖g_j‖²) g_j

(g_i' starts as g_i; g_j is always the ORIGINAL gradient of task j, as in the paper's
reference implementation). The shared step is the SUM Σ_k g_k', like the reference
implementation (not the mean: per-task loss weights already set the scale). Task-only
parameters (a task's head) are left alone: they get the plain sum of the task gradients,
which is their own task's gradient.

Cost: PCGrad needs one gradient per task, so one backward pass per task per step
(`task_gradients`), instead of one backward pass of the summed loss; and every step needs a
batch of every task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from xtune.training.distribution import draw_once

Gradient = tf.Tensor | tf.IndexedSlices | None


def task_gradients(
    compute_losses: Callable[[], Sequence[tf.Tensor]],
    variables: Sequence[tf.Variable],
) -> tuple[list[tf.Tensor], list[list[Gradient]]]:
    """Run `compute_losses()` (the forward pass: one scalar loss per task) under one persistent
    `tf.GradientTape`, then take each task's gradients: one backward pass per task.

    Returns `(losses, gradients)` with `gradients[k][v]` the gradient of task k's loss for
    `variables[v]`, or None where task k does not reach that variable (another task's head).
    """
    with tf.GradientTape(persistent=True) as tape:
        losses = list(compute_losses())
    gradients = [tape.gradient(loss, variables) for loss in losses]
    del tape  # a persistent tape holds the forward pass's activations until released
    return losses, gradients


def random_projection_orders(num_tasks: int, generator: tf.random.Generator) -> tf.Tensor:
    """An int32 `[K, K − 1]` tensor: row i lists the other tasks in a random order, the order
    in which task i's gradient is projected. Draws from `generator` (its state advances, so
    each call inside a `tf.function` gives new orders; same seed -> same sequence of orders)."""
    rows = []
    for task in range(num_tasks):
        others = tf.constant([other for other in range(num_tasks) if other != task], tf.int32)
        shuffle = tf.argsort(generator.uniform([num_tasks - 1]))
        rows.append(tf.gather(others, shuffle))
    return tf.stack(rows) if rows else tf.zeros([0, 0], tf.int32)


def project_conflicting(flat_gradients: tf.Tensor, orders: tf.Tensor) -> tf.Tensor:
    """The PCGrad projection on stacked flat gradients `[K, D]`, returning the `[K, D]` g_k'.

    `orders[i]` lists the tasks j ≠ i in the order task i is projected against them; each
    projection uses the original g_j. A zero g_j conflicts with nothing (no division by 0).
    """
    num_tasks = flat_gradients.shape[0]
    squared_norms = tf.reduce_sum(tf.square(flat_gradients), axis=1)
    projected = []
    for task in range(num_tasks):
        gradient = flat_gradients[task]
        for position in range(num_tasks - 1):
            other = orders[task, position]
            other_gradient = tf.gather(flat_gradients, other)
            dot = tf.reduce_sum(gradient * other_gradient)
            scale = tf.math.divide_no_nan(tf.minimum(dot, 0.0), tf.gather(squared_norms, other))
            gradient = gradient - scale * other_gradient
        projected.append(gradient)
    return tf.stack(projected)


def pcgrad(
    task_gradients: Sequence[Sequence[Gradient]],
    shared: Sequence[bool],
    generator: tf.random.Generator,
) -> list[Gradient]:
    """One combined gradient per variable from per-task gradients, with PCGrad on the shared ones.

    Args:
        task_gradients: `task_gradients[k][v]`: task k's gradient for variable v (all tasks
            list the variables in the same order); None where task k does not reach v.
        shared: `shared[v]` True for variables all tasks share (the encoder's). Their
            gradients, as one flat vector per task (IndexedSlices made dense, None as zeros),
            go through `project_conflicting` in orders drawn from `generator`, then are summed.
        generator: a `tf.random.Generator` created once outside any `tf.function` (e.g.
            `tf.random.Generator.from_seed(seed)`), so the result is deterministic per seed.

    Returns the gradient list to hand to `optimizer.apply(gradients, variables)`: None for a
    variable no task reaches. Task-only variables get the plain sum of the tasks' gradients.
    Runs eagerly or inside `tf.function` (the number of tasks and variables is static).
    """
    num_tasks = len(task_gradients)
    if num_tasks == 0:
        raise ValueError("pcgrad: expected gradients of at least one task")
    if any(len(gradients) != len(shared) for gradients in task_gradients):
        raise ValueError("pcgrad: every task needs one gradient per variable (len(shared))")
    per_variable = list(zip(*task_gradients, strict=True))
    combined: list[Gradient] = [
        None if is_shared else sum_gradients(gradients)
        for gradients, is_shared in zip(per_variable, shared, strict=True)
    ]
    shared_indices = [
        index
        for index, is_shared in enumerate(shared)
        if is_shared and any(gradient is not None for gradient in per_variable[index])
    ]
    if not shared_indices:
        return combined
    dense = [dense_per_task(per_variable[index]) for index in shared_indices]
    flat = tf.stack(
        [
            tf.concat([tf.reshape(tf.cast(d[k], tf.float32), [-1]) for d in dense], axis=0)
            for k in range(num_tasks)
        ]
    )
    orders = draw_once(lambda: random_projection_orders(num_tasks, generator))
    summed = tf.reduce_sum(project_conflicting(flat, orders), axis=0)
    for index, gradient in zip(shared_indices, unflatten(summed, dense), strict=True):
        combined[index] = gradient
    return combined


def sum_gradients(gradients: Sequence[Gradient]) -> Gradient:
    """The sum of the non-None gradients (None if all are); one gradient passes through as is,
    so a head's IndexedSlices stay sparse."""
    present = [gradient for gradient in gradients if gradient is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return tf.add_n([tf.convert_to_tensor(gradient) for gradient in present])


def dense_per_task(gradients: Sequence[Gradient]) -> list[tf.Tensor]:
    """One variable's gradients, one per task, as dense tensors; None becomes zeros shaped like
    another task's gradient (at least one is not None)."""
    dense = [None if g is None else tf.convert_to_tensor(g) for g in gradients]
    template = next(gradient for gradient in dense if gradient is not None)
    return [tf.zeros_like(template) if gradient is None else gradient for gradient in dense]


def unflatten(flat: tf.Tensor, dense: Sequence[Sequence[tf.Tensor]]) -> list[tf.Tensor]:
    """Split a flat float32 vector back into the variables' shapes and gradient dtypes."""
    templates = [per_task[0] for per_task in dense]
    sizes = tf.stack([tf.size(template) for template in templates])
    pieces = tf.split(flat, sizes, num=len(templates))
    return [
        tf.ensure_shape(
            tf.cast(tf.reshape(piece, tf.shape(template)), template.dtype), template.shape
        )
        for piece, template in zip(pieces, templates, strict=True)
    ]
