"""`training.distribution`: the `tf.distribute` strategy a run trains under, and the replica
arithmetic `TaskModel`'s own training step needs to match one replica.

`mirrored` is data parallelism on one machine (`tf.distribute.MirroredStrategy`, every GPU, or
every logical CPU where there is no GPU): each step's global batch of `training.batch_size`
rows is split into one consecutive slice per replica (`replica_slices`). With `R` replicas
and `n_r` of the step's `N` rows on replica `r`, the step is the one-replica step when

- each replica's mean loss is weighted by `n_r / N` before its gradients (`replica_share`:
  a Keras `Loss` already divides its mean by `R`, exact for equal slices; the share
  corrects that for the unequal slices of an epoch's last batch): the replicas' gradients
  then sum to the gradient of the global batch's mean loss;
- Keras's optimizer sums the replicas' gradients itself, as in its own step; where the
  step needs the whole gradient first (global-norm clipping, PCGrad, the FGM/PGD
  direction) it is summed over the replicas here (`sum_over_replicas`) and every replica
  hands the optimizer `1/R` of the sum (`share_of_sum`), which Keras's sum restores. Keras
  clips each replica's share before its sum, so its clip norm is divided by `R` too
  (`per_replica_clipnorm`): the share of the clipped sum. Without clipping a single task's
  gradients go to Keras as they are: a word embedding's `IndexedSlices` stay sparse, as on
  one device (Keras's Adam squares each slice of them, duplicates apart);
- random draws and assignments inside the step happen once for all replicas
  (`draw_once`, `assign_on_every_replica`).

On one replica the functions used inside a step return their input unchanged (bitwise).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from xtune.config_schema import RunConfig, mirroring_blocker
from xtune.model import TaskGraph, functional_view
from xtune.registry import ConfigError

MIRRORED, NONE = "mirrored", "none"


def run_strategy(config: RunConfig) -> tf.distribute.Strategy:
    """The strategy `training.distribution` resolves to on this machine."""
    setting = config.training.distribution
    strategy = make_strategy(resolve_distribution(setting, mirroring_blocker(config)))
    check_global_batch(config.training.batch_size, strategy)
    return strategy


def resolve_distribution(setting: str, blocker: str | None) -> str:
    """`auto`: `mirrored` when more than one GPU is visible and the run can be mirrored
    (`blocker`: why not, from `xtune.config_schema.mirroring_blocker`), else `none`."""
    if setting != "auto":
        return setting
    if len(tf.config.list_logical_devices("GPU")) < 2:
        return NONE
    if blocker is not None:
        print(f"xtune: training on one GPU: {blocker}", flush=True)
        return NONE
    return MIRRORED


def make_strategy(distribution: str) -> tf.distribute.Strategy:
    """The default (one-device) strategy for `none`; for `mirrored` a `MirroredStrategy` over
    every GPU, or every logical CPU when there is no GPU (tests split the CPU in two)."""
    if distribution == NONE:
        return tf.distribute.get_strategy()
    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return mirrored_strategy(tuple(device.name for device in devices))


@functools.cache
def mirrored_strategy(devices: tuple[str, ...]) -> tf.distribute.MirroredStrategy:
    """One strategy per process (a grid trains many runs in one): a second strategy over the
    same devices numbers its collective operations from the start again, and TensorFlow then
    matches them with the first one's (`Shape mismatch in the collective instance`)."""
    return tf.distribute.MirroredStrategy(list(devices))


def check_global_batch(batch_size: int, strategy: tf.distribute.Strategy) -> None:
    """`training.batch_size` splits evenly across the replicas (a step's first batch must:
    `fit` takes the mean of its replicas' slices to build the model; the last, partial
    batch of an epoch may split unevenly)."""
    count = strategy.num_replicas_in_sync
    if batch_size % count:
        raise ConfigError(
            f"training.batch_size: {batch_size} does not split across the {count} replicas of "
            f"training.distribution: mirrored; use a multiple of {count} or distribution: none"
        )


def describe(strategy: tf.distribute.Strategy) -> str:
    """`, mirrored x2` after the device in the run's start line; nothing on one device."""
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return f", mirrored x{strategy.num_replicas_in_sync}"
    return ""


def distribution_record(strategy: tf.distribute.Strategy) -> dict[str, Any]:
    """What metrics.json keeps of the strategy."""
    name = MIRRORED if isinstance(strategy, tf.distribute.MirroredStrategy) else NONE
    return {"strategy": name, "replicas": strategy.num_replicas_in_sync}


def replicas() -> int:
    """Replicas of the strategy in scope (1 outside any)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def per_replica_clipnorm(clipnorm: float | None) -> float | None:
    """The clip norm Keras applies to each replica's share of the summed gradient."""
    if clipnorm is None or replicas() == 1:
        return clipnorm
    return clipnorm / replicas()


def single_replica_views(graph: TaskGraph) -> TaskGraph:
    """The graph with its task and embedding views made again outside any strategy scope:
    a Keras model keeps the strategy it was made under and would run each batch it predicts
    on every replica; dev scoring and prediction stay on one device (the views share the
    model's weights and make none)."""
    return dataclasses.replace(
        graph,
        task_models={name: remade(view) for name, view in graph.task_models.items()},
        embed_models={name: remade(view) for name, view in graph.embed_models.items()},
    )


def remade(view: keras.Model) -> keras.Model:
    return functional_view(view.input, view.output, view.name)


# ---------------------------------------------------------------- inside a training step


def replica_share(rows: tf.Tensor) -> tf.Tensor | None:
    """The weight of this replica's loss, `R * n_r / N` (None on one replica: weight 1).

    A Keras `Loss` that averages over its batch already divides the average by `R` under a
    strategy (Keras's convention, exact for equal slices); `R * n_r / N` turns that into
    `n_r / N` times the replica's mean, exact for unequal slices too."""
    count = replicas()
    if count == 1:
        return None
    rows = tf.cast(rows, tf.float32)
    context = tf.distribute.get_replica_context()
    return count * rows / context.all_reduce(tf.distribute.ReduceOp.SUM, rows)


def weighted_loss(loss: tf.Tensor, share: tf.Tensor | None) -> tf.Tensor:
    """The replica's loss weighted by its `replica_share` (0 for a replica without rows)."""
    if share is None:
        return loss
    return tf.math.multiply_no_nan(loss, tf.cast(share, loss.dtype))


def replica_mean(loss: tf.Tensor) -> tf.Tensor:
    """The mean over a replica's rows of a Keras loss that divided it by `R` (what the
    loss trackers show, as Keras's own step does)."""
    count = replicas()
    return loss if count == 1 else loss * tf.cast(count, loss.dtype)


def sum_over_replicas(gradients: list[Any]) -> list[Any]:
    """Every replica's gradients summed, on every replica (None stays None)."""
    if replicas() == 1:
        return gradients
    present = [i for i, gradient in enumerate(gradients) if gradient is not None]
    if not present:
        return gradients
    dense = [tf.convert_to_tensor(gradients[i]) for i in present]
    summed = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, dense)
    gradients = list(gradients)
    for i, gradient in zip(present, summed, strict=True):
        gradients[i] = gradient
    return gradients


def share_of_sum(gradients: list[Any]) -> list[Any]:
    """`1/R` of summed gradients: Keras's optimizer sums the replicas' shares again."""
    count = replicas()
    if count == 1:
        return gradients
    return [None if g is None else g / tf.cast(count, g.dtype) for g in gradients]


def draw_once(draw: Callable[[], Any]) -> Any:
    """`draw()` run once for all replicas (the same random numbers on each, in the order one
    replica would draw them)."""
    if replicas() == 1:
        return draw()
    return tf.distribute.get_replica_context().merge_call(lambda strategy: draw())


def assign_on_every_replica(variable: Any, value: tf.Tensor) -> None:
    """`variable.assign(value)` from inside a step; `value` must be the same on every
    replica (a mirrored variable cannot be assigned one replica at a time)."""
    if replicas() == 1:
        variable.assign(value)
        return

    def update(strategy: tf.distribute.Strategy, value: Any) -> None:
        strategy.extended.update(
            variable.value, lambda copy, new: copy.assign(new), args=(value,), group=False
        )

    tf.distribute.get_replica_context().merge_call(update, args=(value,))


# ---------------------------------------------------------------- data


def replica_slices(dataset: tf.data.Dataset, count: int) -> tf.data.Dataset:
    """Each `(kind, batches)` element as `count` consecutive elements, the i-th holding
    replica i's consecutive slice of every batch's rows (the step kind kept whole):
    `MirroredStrategy` deals a per-replica dataset's elements out to the replicas in turn."""

    def slices(kind: tf.Tensor, batches: Any) -> tf.data.Dataset:
        def replica(index: tf.Tensor) -> tuple[tf.Tensor, Any]:
            return kind, tf.nest.map_structure(lambda t: rows_of(t, index, count), batches)

        return tf.data.Dataset.range(count).map(replica)

    return dataset.flat_map(slices)


def rows_of(tensor: tf.Tensor, index: tf.Tensor, count: int) -> tf.Tensor:
    """Replica `index`'s slice of `tensor`'s rows: ceil(rows / count) rows, fewer at the end."""
    rows = tf.shape(tensor, out_type=tf.int64)[0]
    size = (rows + count - 1) // count
    start = tf.minimum(index * size, rows)
    return tensor[start : tf.minimum(start + size, rows)]


def distribute(
    strategy: tf.distribute.Strategy, make_dataset: Callable[[], tf.data.Dataset]
) -> Any:
    """`fit`'s dataset for `strategy`: `make_dataset()` on one replica, else one slice per
    replica of a dataset made afresh by every iterator.

    Afresh because `fit` under a strategy first takes one batch from an iterator of its own
    (to build the model) before it iterates again to train, and a seeded shuffle that
    reshuffles each iteration would give the second iterator another order than one
    replica trains on."""
    count = strategy.num_replicas_in_sync
    if count == 1:
        return make_dataset()

    def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
        fresh = tf.data.Dataset.range(1).flat_map(lambda _: make_dataset())
        return replica_slices(fresh, count).prefetch(tf.data.AUTOTUNE)

    return strategy.distribute_datasets_from_function(per_worker)
