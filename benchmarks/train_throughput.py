"""Training throughput of xtune next to PyTorch + transformers, measured side by side in one run.

    .venv/bin/python benchmarks/train_throughput.py [--quick] [--torch-python PATH]
        [--device auto|cpu|gpu] [--sections minilm bert-base real e5] [--no-torch-compile]

Sections (each interleaves its configurations repeat by repeat, so load from other users of a
shared machine hits every configuration alike):

1. Peak: the best of several 2048x2048 matmuls, float32 with numpy and TF, bfloat16 with TF
   (and the same in PyTorch), as the machine's limit in this run; measured at the start and
   after every section, the best kept and printed at the end.
2. Fixed shapes: MiniLM-L6 and a BERT-base-shaped random encoder (12 layers, hidden 768,
   12 heads, intermediate 3072, Chinese vocabulary of 21128), every row 128 tokens, batch 32,
   float32 and bfloat16 (MiniLM also with each optimizer variant of `UPDATES`: TensorFlow's
   fused Adam kernel, and lazy embedding updates with it; and, in the precision `auto`
   picks, the whole step XLA-compiled, alone and with lazy rows), xtune against PyTorch. Target:
   xtune's best >= 1.2x PyTorch's best.
3. Real data: a GoEmotions slice (`--data-root`/goemotions/train.tsv), MiniLM, max length 64,
   xtune with fixed padding, per-batch dynamic padding, length bucketing, bucketing with the
   fused Adam kernel and with lazy embedding updates too, bucketing with the whole step
   XLA-compiled (alone and with lazy rows and the fused kernel), against PyTorch with per-batch
   dynamic padding, in random batches and in Hugging Face Trainer's length-grouped order
   (`group_by_length`), float32 and bfloat16 autocast, eager and `torch.compile`d, on the same
   rows. Target: xtune's best >= 2.0x PyTorch's best; the fitted per-step constant of each
   side is printed.
4. multilingual-e5-small (BERT with XLM-R's 250,037-piece vocabulary; xtune's real weights,
   PyTorch's `BertModel` of the same configuration with random weights), length 64, batch
   32, float32 and bfloat16, the full vocabulary (xtune also with the `UPDATES` variants)
   and one trimmed to `--e5-pieces` rows, as `data.trim_vocabulary` does; in the precision
   `auto` picks, also the whole step XLA-compiled (full vocabulary: with lazy rows and the
   fused kernel).

PyTorch's side of every section runs float32 and bfloat16 autocast, and (sections 2 and 3;
`--no-torch-compile` leaves them out) the same through `torch.compile` (inductor; its
compilation, minutes on a CPU, happens in the untimed warm-up): each ratio is against
PyTorch's best configuration on the machine at hand, and per precision.

xtune side: the real pipeline (`tokenize_examples`, `make_dataset`), the model of
`xtune.training.trainer.build_model` (mean-pooling head), the `bce` loss and the `adamw`
optimizer (global-norm clipping 1.0) compiled as `train` compiles them, stepped with the
compiled train function that `model.fit` calls. PyTorch side (a separate interpreter,
`--torch-python`): `transformers.BertModel` from the same configuration (SDPA attention),
mean pooling, dropout, a linear layer, `BCEWithLogitsLoss`, `torch.optim.AdamW` with the same
hyper-parameters and clipping, batches padded in Python as a collate function does.

Timing: each configuration first runs untimed warm-up steps (tracing, first-shape kernels),
then every repeat times `--steps` consecutive steps; "best" is the fastest repeat, "median"
the median. Ratios compare best against best.

FLOP count (training = forward + backward = 3x the forward's multiply-adds x 2): for a batch
of `b` rows padded to length `L`, with `n` layers, hidden `h`, intermediate `i`,
    matmul parameters per layer  P = 4 h^2 (Q, K, V, output) + 2 h i (feed-forward)
    FLOPs = 6 b L n P            (token-wise matmuls)
          + 12 b n L^2 h         (Q K^T and attention x V: 2 b L^2 h each, forward)
          + 6 b (h^2 + h c)      (pooler and the c logits; per row)
Embedding lookups, LayerNorm, softmax, GELU and the optimizer update are not counted (they
are memory-bound), so achieved FLOP/s is a lower bound of the work done. Padded positions are
counted, since they are computed; "% of peak" divides by the same run's matmul peak of the
step's compute dtype.

GPU (`--device auto`, the default, uses one where a side sees one; `gpu` requires it on both
sides, `cpu` hides it from both): TensorFlow places xtune's steps on the GPU (XLA on, as
`jit_compile: auto` does there) and the PyTorch worker moves the model and each batch to
`cuda`, autocasts to bfloat16 on `cuda`, uses fused AdamW and runs float32 matmuls in
TensorFloat-32 as TensorFlow does by default. GPUs run asynchronously, so every timer is read
after the device is idle: `torch.cuda.synchronize()` in the worker, the loss read back and
`tf.test.experimental.sync_devices()` for xtune. The peak is then each library's best
8192^3 matmul on the GPU (a 2048^3 one lasts tens of microseconds there, mostly launch
overhead), and "% peak" divides by that measured bfloat16 (or float32) peak; where the device
name is a known one, "% sheet" also divides the bfloat16 rows by the datasheet's dense
bfloat16 peak (H100 SXM and H200 989 TFLOP/s, A100 312), which a real matmul does not reach.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
NUM_LABELS = 28
BATCH_SIZE = 32
SMALL_MATMUL_SIZE = 256  # a first bfloat16 probe (`TorchWorker.peak`)
FIXED_LENGTH = 128
REAL_DATA_LENGTH = 64
E5_LENGTH = 64
# The optimizer variants of xtune's rows: label suffix -> settings added to the AdamW's
# (`optimizer.fused_update`: TensorFlow's fused Adam kernel; `optimizer.lazy_embeddings`:
# only the batch's word-embedding rows move).
UPDATES: dict[str, dict | None] = {
    "": None,
    " fused": {"fused_update": True},
    " lazy fused": {"lazy_embeddings": True, "fused_update": True},
}
LEARNING_RATE = 5e-5
WEIGHT_DECAY = 0.01
CLIPNORM = 1.0
SEED = 0
BERT_BASE_VOCAB_SIZE = 21128
BERT_BASE_SHAPE = {
    "num_layers": 12,
    "hidden_dim": 768,
    "num_heads": 12,
    "intermediate_dim": 3072,
}
MATMUL_SIZE = 2048
# A 2048^3 matmul lasts ~20 us on a datacenter GPU, mostly launch overhead: time a larger one.
GPU_MATMUL_SIZE = 8192
# Datasheet dense (no sparsity) bfloat16 tensor-core peaks in TFLOP/s, by a substring of the
# device name; the first match wins, so the PCIe and NVL parts come before the SXM "H100".
DATASHEET_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("A100", 312.0),
)


# ---------------------------------------------------------------- shared by both sides


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def no_wait() -> None:
    """CPU work is done when the call returns."""


def best_matmul_flops(
    matmul: Any, size: int = MATMUL_SIZE, wait: Any = no_wait, repeats: int = 7
) -> float:
    """FLOP/s of the fastest of `repeats` calls of a size x size x size matmul; `wait` blocks
    until the device has finished (GPUs run asynchronously)."""
    matmul()
    wait()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        matmul()
        wait()
        seconds.append(time.perf_counter() - started)
    return 2 * size**3 / min(seconds)


def datasheet_bf16_flops(device_name: str) -> float | None:
    """The datasheet's dense bfloat16 peak of a known GPU, in FLOP/s; None for others."""
    for fragment, tflops in DATASHEET_BF16_TFLOPS:
        if fragment in device_name:
            return tflops * 1e12
    return None


def pad_rows(
    token_ids: np.ndarray,
    segment_ids: np.ndarray,
    row_splits: np.ndarray,
    rows: np.ndarray,
    length: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense ids, segments and mask of `rows`, padded to `length` or to the longest row."""
    starts, ends = row_splits[rows], row_splits[rows + 1]
    width = int((ends - starts).max()) if length is None else length
    ids = np.zeros((len(rows), width), np.int64)
    segments = np.zeros((len(rows), width), np.int64)
    mask = np.zeros((len(rows), width), np.int64)
    for k, (start, end) in enumerate(zip(starts, ends, strict=True)):
        ids[k, : end - start] = token_ids[start:end]
        segments[k, : end - start] = segment_ids[start:end]
        mask[k, : end - start] = 1
    return ids, segments, mask


# ---------------------------------------------------------------- PyTorch worker (subprocess)


def torch_device(torch: Any, request: str) -> Any:
    """`cuda` where `request` allows it and a GPU is there, else `cpu`; `gpu` requires one."""
    if request != "cpu" and torch.cuda.is_available():
        return torch.device("cuda")
    if request == "gpu":
        raise RuntimeError(f"--device gpu: torch.cuda.is_available() is False in {sys.executable}")
    return torch.device("cpu")


class TorchWorker:
    """Runs in the PyTorch interpreter; answers one JSON command per stdin line."""

    def __init__(self, device_request: str) -> None:
        import torch

        self.torch = torch
        torch.set_num_threads(cpu_count())
        torch.manual_seed(SEED)
        self.device = torch_device(torch, device_request)
        self.on_gpu = self.device.type == "cuda"
        if self.on_gpu:
            # TensorFlow runs float32 matmuls in TensorFloat-32 on GPUs by default: so does this.
            torch.set_float32_matmul_precision("high")
        # name -> {"model", "optimizer", "compiled"}: a section's models, stepped in turn.
        self.models: dict[str, dict[str, Any]] = {}
        self.loss = torch.nn.BCEWithLogitsLoss()
        self.streams: dict[str, Any] = {}

    def wait(self) -> None:
        """Block until the GPU has run everything queued (a no-op on CPU)."""
        if self.on_gpu:
            self.torch.cuda.synchronize()

    def peak(self) -> dict[str, Any]:
        """Best float32 and bfloat16 matmul FLOP/s. On a CPU bfloat16 is first timed at a
        small size: where it is emulated (0.3 GFLOP/s without bf16 instructions: 8 x 57 s,
        ~7.5 minutes, at 2048, twice a run) that number stands and the full size is skipped."""
        size = GPU_MATMUL_SIZE if self.on_gpu else MATMUL_SIZE
        found = {"float32": self.matmul_flops(size, self.torch.float32)}
        sizes = {"float32": size, "bfloat16": SMALL_MATMUL_SIZE}
        found["bfloat16"] = self.matmul_flops(SMALL_MATMUL_SIZE, self.torch.bfloat16)
        if self.on_gpu or found["bfloat16"] > 0.05 * found["float32"]:  # not emulated
            found["bfloat16"] = self.matmul_flops(size, self.torch.bfloat16)
            sizes["bfloat16"] = size
        return {**found, "sizes": sizes}

    def matmul_flops(self, size: int, dtype: Any) -> float:
        a = self.torch.randn(size, size, device=self.device, dtype=dtype)
        b = self.torch.randn(size, size, device=self.device, dtype=dtype)
        return best_matmul_flops(lambda: self.torch.mm(a, b), size, self.wait)

    def versions(self) -> dict[str, Any]:
        import transformers

        device_name = self.torch.cuda.get_device_name(self.device) if self.on_gpu else "cpu"
        return {
            "versions": f"torch {self.torch.__version__}, transformers {transformers.__version__}",
            "threads": self.torch.get_num_threads(),
            "device": str(self.device),
            "device_name": device_name,
        }

    def clear(self) -> dict[str, Any]:
        """Free every model (a new section builds its own)."""
        self.models = {}
        gc.collect()
        if self.on_gpu:
            self.torch.cuda.empty_cache()
        return {}

    def build(self, model: dict[str, Any], name: str = "model") -> dict[str, Any]:
        """BertModel from the xtune backbone's configuration + mean pooling + linear logits,
        with its AdamW, kept as `name`."""
        import transformers

        torch = self.torch
        config = transformers.BertConfig(
            vocab_size=model["vocabulary_size"],
            hidden_size=model["hidden_dim"],
            num_hidden_layers=model["num_layers"],
            num_attention_heads=model["num_heads"],
            intermediate_size=model["intermediate_dim"],
            max_position_embeddings=model["max_sequence_length"],
            type_vocab_size=model["num_segments"],
            hidden_dropout_prob=model["dropout"],
            attention_probs_dropout_prob=model["dropout"],
            hidden_act="gelu",
            layer_norm_eps=1e-12,
            attn_implementation="sdpa",
        )

        class Classifier(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.bert = transformers.BertModel(config)
                self.dropout = torch.nn.Dropout(model["dropout"])
                self.logits = torch.nn.Linear(config.hidden_size, NUM_LABELS)

            def forward(self, ids: Any, segments: Any, mask: Any) -> Any:
                states = self.bert(
                    input_ids=ids, token_type_ids=segments, attention_mask=mask
                ).last_hidden_state
                weights = mask.unsqueeze(-1).to(states.dtype)
                pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1)
                return self.logits(self.dropout(pooled)).float()

        classifier = Classifier().to(self.device).train()
        decay, no_decay = [], []
        for path, parameter in classifier.named_parameters():
            is_excluded = path.endswith("bias") or "LayerNorm" in path or "layer_norm" in path
            (no_decay if is_excluded else decay).append(parameter)
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": WEIGHT_DECAY},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=LEARNING_RATE,
            eps=1e-6,
            fused=self.on_gpu or None,  # one kernel per update on GPU; the default on CPU
        )
        self.models[name] = {"model": classifier, "optimizer": optimizer, "compiled": None}
        return {"parameters": sum(p.numel() for p in classifier.parameters())}

    def forward_of(self, name: str, compiled: bool) -> Any:
        """The model's forward, or its `torch.compile`d version (compiled on first use;
        backward through AOTAutograd, dynamic shapes after the second padded length)."""
        entry = self.models[name]
        if not compiled:
            return entry["model"]
        if entry["compiled"] is None:
            entry["compiled"] = self.torch.compile(entry["model"])
        return entry["compiled"]

    def load(
        self, name: str, path: str, padding: str, max_length: int, batch_size: int = BATCH_SIZE
    ) -> dict[str, Any]:
        """A batch stream over the rows in `path`: shuffled per epoch, last batch kept.
        `padding`: "fixed" (to `max_length`), "dynamic" (to each batch's longest row) or
        "grouped" (dynamic, in the order of Hugging Face Trainer's `group_by_length`: its
        `LengthGroupedSampler`, shuffled megabatches of 50 batches sorted by length)."""
        with np.load(path) as stored:
            data = {key: stored[key] for key in stored.files}
        self.streams[name] = {
            **data,
            "length": max_length if padding == "fixed" else None,
            "grouped": padding == "grouped",
            "batch_size": batch_size,
            "generator": self.torch.Generator().manual_seed(SEED),
            "rng": np.random.default_rng(SEED),
            "order": np.array([], np.int64),
        }
        return {"rows": len(data["row_splits"]) - 1, "pad_fraction": self.pad_fraction(name)}

    def epoch_order(self, stream: dict[str, Any]) -> np.ndarray:
        """The rows of one epoch, in the order the stream batches them."""
        if not stream["grouped"]:
            return stream["rng"].permutation(len(stream["row_splits"]) - 1)
        from transformers.trainer_pt_utils import LengthGroupedSampler

        lengths = np.diff(stream["row_splits"]).tolist()
        batch, generator = stream["batch_size"], stream["generator"]
        sampler = LengthGroupedSampler(batch, lengths=lengths, generator=generator)
        return np.fromiter(iter(sampler), np.int64)

    def pad_fraction(self, name: str) -> float:
        """Share of computed positions that are padding over one epoch (a fresh order, so the
        stream's own shuffling is left as it was)."""
        stream = dict(self.streams[name], rng=np.random.default_rng(SEED))
        stream["generator"] = self.torch.Generator().manual_seed(SEED)
        lengths = np.diff(stream["row_splits"])[self.epoch_order(stream)]
        batch = stream["batch_size"]
        batches = np.array_split(lengths, range(batch, len(lengths), batch))
        width = stream["length"]
        computed = sum(len(b) * (width or int(b.max())) for b in batches)
        return 1 - int(lengths.sum()) / computed

    def next_batch(self, stream: dict[str, Any]) -> tuple[np.ndarray, ...]:
        """Ids, segments, mask and labels of the stream's next batch, as numpy arrays."""
        if len(stream["order"]) == 0:
            stream["order"] = self.epoch_order(stream)
        batch = stream["batch_size"]
        rows, stream["order"] = stream["order"][:batch], stream["order"][batch:]
        ids, segments, mask = pad_rows(
            stream["token_ids"], stream["segment_ids"], stream["row_splits"], rows, stream["length"]
        )
        return ids, segments, mask, stream["labels"][rows]

    def to_device(self, arrays: tuple[np.ndarray, ...]) -> tuple[Any, ...]:
        return tuple(self.torch.from_numpy(x).to(self.device) for x in arrays)

    def step(self, batch: tuple[Any, ...], bfloat16: bool, name: str, compiled: bool) -> Any:
        """One training step; the loss stays on the device (reading it would wait for it)."""
        torch = self.torch
        ids, segments, mask, labels = batch
        forward, entry = self.forward_of(name, compiled), self.models[name]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bfloat16):
            logits = forward(ids, segments, mask)
        loss = self.loss(logits, labels)
        entry["optimizer"].zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(entry["model"].parameters(), CLIPNORM)
        entry["optimizer"].step()
        return loss.detach()

    def run(
        self, stream: str, precision: str, steps: int, model: str = "model", compiled: bool = False
    ) -> dict[str, Any]:
        """Time `steps` steps (batch padding included, as a DataLoader collate does it); an
        `error` instead where the step fails (`torch.compile` without a working compiler)."""
        try:
            return self.timed_steps(stream, precision, steps, model, compiled)
        except Exception as error:  # reported in the table; the other rows still run
            return {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"}

    def timed_steps(
        self, stream: str, precision: str, steps: int, model: str, compiled: bool
    ) -> dict[str, Any]:
        source = self.streams[stream]
        bfloat16 = precision == "bfloat16"
        shapes, tokens = [], 0
        started = time.perf_counter()
        for _ in range(steps):
            arrays = self.next_batch(source)
            self.step(self.to_device(arrays), bfloat16, model, compiled)
            # Counted on the host: reading a GPU tensor would wait for the GPU every step.
            shapes.append(list(arrays[0].shape))
            tokens += int(arrays[2].sum())
        self.wait()
        return {"seconds": time.perf_counter() - started, "shapes": shapes, "tokens": tokens}

    def serve(self, requests: Any, replies: Any) -> None:
        for line in requests:
            command = json.loads(line)
            operation = command.pop("op")
            if operation == "exit":
                break
            reply = getattr(self, operation)(**command)
            replies.write(json.dumps(reply) + "\n")
            replies.flush()


def torch_worker_main(device_request: str) -> int:
    # Replies go to the original stdout; anything the libraries print goes to stderr.
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    TorchWorker(device_request).serve(sys.stdin, replies)
    return 0


class TorchClient:
    """The benchmark's handle on the PyTorch worker subprocess."""

    def __init__(self, python: str, device_request: str):
        self.process = subprocess.Popen(
            [python, __file__, "--torch-worker", "--device", device_request],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": ""},
        )

    def call(self, op: str, **arguments: Any) -> dict[str, Any]:
        self.process.stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the PyTorch worker exited (status {self.process.wait()})")
        return json.loads(line)

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.write(json.dumps({"op": "exit"}) + "\n")
            self.process.stdin.close()
        self.process.wait(timeout=60)


# ---------------------------------------------------------------- measurements


@dataclass(frozen=True)
class Shape:
    """What the FLOP count needs to know about an encoder."""

    num_layers: int
    hidden_dim: int
    intermediate_dim: int

    def training_flops(self, rows: int, length: int) -> float:
        n, h, i = self.num_layers, self.hidden_dim, self.intermediate_dim
        per_layer = 4 * h * h + 2 * h * i
        return (
            6 * rows * length * n * per_layer
            + 12 * rows * n * length**2 * h
            + 6 * rows * (h * h + h * NUM_LABELS)
        )


@dataclass
class Measurement:
    """Timed windows of one configuration."""

    label: str
    precision: str
    seconds: list[float] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    computed_tokens: list[int] = field(default_factory=list)
    flops: list[float] = field(default_factory=list)
    warmup_seconds: float = 0.0
    pad_fraction_epoch: float | None = None

    def add(self, seconds: float, shapes: list[list[int]], tokens: int, shape: Shape) -> None:
        self.seconds.append(seconds)
        self.samples.append(sum(rows for rows, _ in shapes))
        self.tokens.append(tokens)
        self.computed_tokens.append(sum(rows * length for rows, length in shapes))
        self.flops.append(sum(shape.training_flops(rows, length) for rows, length in shapes))

    def rates(self, amounts: list[float]) -> list[float]:
        return [amount / seconds for amount, seconds in zip(amounts, self.seconds, strict=True)]

    @property
    def best(self) -> float:
        return max(self.rates(self.samples))

    @property
    def median(self) -> float:
        return statistics.median(self.rates(self.samples))

    def epoch_rate(self, mean_length: float) -> float:
        """Samples/s over an epoch, projected from the fastest window: its computed (padded)
        tokens/s at the epoch's padding, `mean_length` non-pad tokens a row. A window is a
        few batches, and length-grouped orders (bucketing, `group_by_length`) make some
        windows shorter than the epoch's average; this takes that out."""
        k = self.fastest
        computed_rate = self.computed_tokens[k] / self.seconds[k]
        return computed_rate * (1 - self.pad_fraction_epoch) / mean_length

    @property
    def fastest(self) -> int:
        rates = self.rates(self.samples)
        return rates.index(max(rates))

    def pad_fraction(self) -> float:
        return 1 - sum(self.tokens) / sum(self.computed_tokens)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_description() -> str:
    model, flags = platform.processor() or "unknown CPU", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line
                break
    bf16 = [flag for flag in ("avx512_bf16", "amx_bf16") if f" {flag}" in flags]
    return f"{model}, {cpu_count()} cores, bf16 instructions: {', '.join(bf16) or 'none'}"


def tensorflow_gpu_names(request: str) -> list[str]:
    """The GPUs TensorFlow will place xtune's steps on, by device name; `--device cpu` hides
    them (before TensorFlow starts its runtime), `--device gpu` requires one."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if request == "cpu":
        tf.config.set_visible_devices([], "GPU")
        return []
    if request == "gpu" and not gpus:
        raise SystemExit(
            "--device gpu: TensorFlow sees no GPU (a CUDA build: pip install tensorflow[and-cuda])"
        )
    for gpu in gpus:
        # TensorFlow would otherwise reserve nearly all of the GPU's memory at its first op,
        # and the PyTorch worker on the same GPU would run out.
        tf.config.experimental.set_memory_growth(gpu, True)
    return [
        tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name) for gpu in gpus
    ]


def tensorflow_wait() -> Any:
    """A function that blocks until TensorFlow's GPUs have run everything queued; on CPU,
    where an op is done when it returns, one that does nothing."""
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        return tf.test.experimental.sync_devices
    return no_wait


def tensorflow_matmuls(size: int, on_gpu: bool) -> dict[str, Any]:
    """The peak's matmuls on TensorFlow's device; on CPU numpy's too, from the same arrays."""
    import tensorflow as tf

    if on_gpu:
        ta = tf.random.normal((size, size), seed=SEED)
        tb = tf.random.normal((size, size), seed=SEED + 1)
        matmuls = {}
    else:
        rng = np.random.default_rng(SEED)
        a = rng.standard_normal((size, size), dtype=np.float32)
        b = rng.standard_normal((size, size), dtype=np.float32)
        ta, tb = tf.constant(a), tf.constant(b)
        matmuls = {"numpy float32": lambda: a @ b}
    ta16, tb16 = tf.cast(ta, tf.bfloat16), tf.cast(tb, tf.bfloat16)
    matmuls["TF float32"] = lambda: tf.linalg.matmul(ta, tb)
    matmuls["TF bfloat16"] = lambda: tf.linalg.matmul(ta16, tb16)
    return matmuls


class Peak:
    """The machine's matmul limit: per library and dtype, the best 2048^3 matmul (8192^3 on a
    GPU) of every measurement taken in this run (at the start and after each section), so
    that a measurement made while other processes held the cores does not lower it."""

    def __init__(self, torch: TorchClient | None, gpu_name: str | None):
        self.torch = torch
        self.gpu_name = gpu_name
        self.datasheet_bf16 = datasheet_bf16_flops(gpu_name) if gpu_name else None
        self.best: dict[str, float] = {}
        self.sizes: dict[str, int] = {}
        self.measurements = 0
        self.wait = tensorflow_wait()
        self.size = MATMUL_SIZE if self.wait is no_wait else GPU_MATMUL_SIZE
        self.matmuls = tensorflow_matmuls(self.size, on_gpu=self.wait is not no_wait)

    def measure(self) -> None:
        found = {
            name: best_matmul_flops(matmul, self.size, self.wait)
            for name, matmul in self.matmuls.items()
        }
        self.sizes.update(dict.fromkeys(found, self.size))
        if self.torch is not None:
            reply = self.torch.call("peak")
            for dtype in ("float32", "bfloat16"):
                found[f"torch {dtype}"] = reply[dtype]
                self.sizes[f"torch {dtype}"] = reply["sizes"][dtype]
        for name, flops in found.items():
            self.best[name] = max(flops, self.best.get(name, 0.0))
        self.measurements += 1

    def of(self, dtype: str) -> float:
        return max(flops for name, flops in self.best.items() if name.endswith(dtype))

    def print(self) -> None:
        sizes = " / ".join(f"{size}x{size}" for size in sorted(set(self.sizes.values())))
        print(
            f"\n== peak: best {sizes} matmul of 7, over "
            f"{self.measurements} measurements in this run =="
        )
        for name, flops in self.best.items():
            print(f"  {name:<16}{flops / 1e9:8.1f} GFLOP/s")
        if self.gpu_name is not None:
            print(self.datasheet_line())

    def datasheet_line(self) -> str:
        measured = self.of("bfloat16")
        line = (
            f"  '% peak' divides by the measured bfloat16 best, {measured / 1e12:.0f} TFLOP/s; "
            f"datasheet dense bfloat16 peak of {self.gpu_name}: "
        )
        if self.datasheet_bf16 is None:
            return line + "not in DATASHEET_BF16_TFLOPS"
        return line + (
            f"{self.datasheet_bf16 / 1e12:.0f} TFLOP/s (the measured best is "
            f"{100 * measured / self.datasheet_bf16:.0f}% of it; '% sheet' divides by it)"
        )


@contextlib.contextmanager
def global_policy(precision: str):
    import keras

    keras.mixed_precision.set_global_policy(precision)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def compiled_task_model(config: Any, encoder: Any, num_labels: int = NUM_LABELS) -> Any:
    """The `TaskModel` that `train` builds for the config's one task, its step plan set and
    compiled as `compile_stage` compiles it (the task computes the loss in the step)."""
    from xtune.tasks.build import build_tasks
    from xtune.training.optimizers import OPTIMIZERS
    from xtune.training.schedules import SCHEDULES
    from xtune.training.task_model import TaskStep, step_plan
    from xtune.training.trainer import build_model, resolve_jit, resolve_xla_update

    tasks = build_tasks(config.named_tasks())
    for task in tasks:
        task.labels = [f"label_{k}" for k in range(num_labels)]
    graph = build_model(config, encoder, tasks)
    model = graph.model
    views = [graph.task_models[task.name] for task in tasks]
    xla_update = resolve_xla_update(config.training.jit_compile)
    model.plan = step_plan(tasks, views, [TaskStep(0)], None, SEED, xla_update=xla_update)
    schedule = SCHEDULES.build(config.schedule.to_dict())
    optimizer = OPTIMIZERS.build(config.optimizer.to_dict())(model, schedule, 10_000)
    model.compile(optimizer=optimizer, jit_compile=resolve_jit(config.training.jit_compile))
    model.optimizer.build(model.trainable_variables)
    return model


def fit_batches(dataset: Any) -> Any:
    """`(inputs, labels)` batches as a one-task `fit` reads them: `(step kind 0, (batch,))`
    (`xtune.training.task_batches.stage_dataset`)."""
    import tensorflow as tf

    kind = tf.constant(0, tf.int32)
    return dataset.map(lambda inputs, labels: (kind, ((inputs, labels),))).prefetch(
        tf.data.AUTOTUNE
    )


class XtuneRun:
    """One xtune model and its batch stream, stepped by the train function `fit` uses."""

    def __init__(
        self,
        encoder_spec: dict,
        precision: str,
        split: Any,
        padding: str,
        length: int,
        jit_compile: str | bool = "auto",
        optimizer: dict | None = None,
        encoder: Any = None,
        num_labels: int = NUM_LABELS,
        max_buckets: int | None = None,
    ):
        """`optimizer`: settings added to the AdamW's (e.g. `lazy_embeddings`); `encoder`: a
        loaded encoder to use instead of loading `encoder_spec` (a trimmed one);
        `max_buckets`: bucket lengths, instead of what `train` picks (`train_bucket_limit`)."""
        import tensorflow as tf

        from xtune.config import parse_run_config
        from xtune.data.pipeline import make_dataset
        from xtune.encoders import load_encoder
        from xtune.training.trainer import train_bucket_limit

        self.precision = precision
        self.wait = tensorflow_wait()
        config = parse_run_config(
            {
                "data": {"train": "unused.tsv", "max_length": length, "padding": padding},
                "encoder": encoder_spec,
                "head": {"name": "default", "pooling": "mean"},
                "loss": "bce",
                "optimizer": {
                    "name": "adamw",
                    "learning_rate": LEARNING_RATE,
                    "weight_decay": WEIGHT_DECAY,
                    "clipnorm": CLIPNORM,
                    **(optimizer or {}),
                },
                "training": {
                    "batch_size": BATCH_SIZE,
                    "mixed_precision": precision,
                    "jit_compile": jit_compile,
                },
            },
            source="train_throughput",
        )
        self.max_buckets = max_buckets or train_bucket_limit(config.training)
        with global_policy(precision):
            import keras

            keras.utils.set_random_seed(SEED)
            self.encoder = encoder if encoder is not None else load_encoder(config.encoder)
            self.model = compiled_task_model(config, self.encoder, num_labels)

        def stream() -> Any:
            # A new dataset object each time: the same seed then gives the same batches.
            return make_dataset(
                split, BATCH_SIZE, padding, length, True, SEED, max_buckets=self.max_buckets
            )

        def batch_shape(inputs: Any, labels: Any) -> Any:
            mask = inputs["padding_mask"]
            return tf.concat([tf.shape(mask), [tf.reduce_sum(mask)]], axis=0)

        self.first_batch = fit_batches(stream().take(1))
        self.batches = iter(fit_batches(stream().repeat()))
        # In lockstep with `batches`: (rows, padded length, non-pad tokens) of each batch.
        self.shapes = iter(stream().repeat().map(batch_shape))

    def backbone_config(self) -> dict[str, Any]:
        return self.encoder.backbone.get_config()

    def warm_up(self, steps: int) -> float:
        """One `fit` step (traces the train function, builds the loss state as `train` does),
        then `steps` untimed steps of the stream."""
        started = time.perf_counter()
        with global_policy(self.precision):
            self.model.fit(self.first_batch, steps_per_epoch=1, verbose=0, shuffle=False)
        self.run(steps)
        return time.perf_counter() - started

    def run(self, steps: int) -> tuple[float, list[list[int]], int]:
        """Time `steps` calls of the compiled train function that `fit` makes; it reads each
        batch from the tf.data iterator inside the graph, as `fit` does."""
        shapes = [next(self.shapes).numpy().tolist() for _ in range(steps)]
        with global_policy(self.precision):
            started = time.perf_counter()
            for _ in range(steps):
                logs = self.model.train_function(self.batches)
            float(logs["loss"])
            self.wait()  # the last step's weight update may still be queued on a GPU
            seconds = time.perf_counter() - started
        return seconds, [[rows, length] for rows, length, _ in shapes], sum(s[2] for s in shapes)


# ---------------------------------------------------------------- data


def write_vocabulary(path: Path, size: int) -> Path:
    """Special tokens, then CJK characters and filler words: `size` lines."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += [chr(code) for code in range(0x4E00, 0x4E00 + 8000)]
    tokens += [f"w{k}" for k in range(size - len(tokens))]
    path.write_text("\n".join(tokens[:size]) + "\n", encoding="utf-8")
    return path


def bert_base_vocabulary(data_root: Path, scratch: Path) -> Path:
    shared = data_root / "vocab" / "bert-base-chinese" / "vocab.txt"
    if shared.is_file():
        return shared
    return write_vocabulary(scratch / "vocab_21128.txt", BERT_BASE_VOCAB_SIZE)


def full_length_texts(vocabulary: list[str], rows: int) -> list[str]:
    """Texts of random whole vocabulary words, each longer than FIXED_LENGTH tokens."""
    rng = np.random.default_rng(SEED)
    words = [w for w in vocabulary if w.isalnum() and w == w.lower()]
    return [" ".join(rng.choice(words, size=2 * FIXED_LENGTH)) for _ in range(rows)]


def random_labels(rows: int) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    labels = (rng.random((rows, NUM_LABELS)) < 0.08).astype(np.float32)
    labels[np.arange(rows), rng.integers(0, NUM_LABELS, rows)] = 1.0
    return labels


def read_goemotions(path: Path, rows: int) -> tuple[list[str], np.ndarray]:
    """First `rows` rows of a header-less GoEmotions TSV: text, comma-separated ids, id."""
    texts, labels = [], []
    with path.open(encoding="utf-8", newline="") as file:
        for record in csv.reader(file, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(texts) == rows:
                break
            multi_hot = np.zeros(NUM_LABELS, np.float32)
            multi_hot[[int(k) for k in record[1].split(",")]] = 1.0
            texts.append(record[0])
            labels.append(multi_hot)
    return texts, np.stack(labels)


def tokenized(texts: list[str], labels: np.ndarray, vocabulary: list[str], length: int) -> Any:
    from xtune.data.examples import Examples
    from xtune.data.pipeline import tokenize_examples
    from xtune.data.tokenization import TextEncoder
    from xtune.encoders.bert import BertAdapter, WordPieceTokenizer

    examples = Examples("benchmark", texts, None, [[] for _ in texts], list(range(len(texts))))
    encoder = TextEncoder(WordPieceTokenizer(vocabulary, True), BertAdapter.packing, length)
    return tokenize_examples(examples, encoder, labels)


def save_split(split: Any, path: Path) -> str:
    segments = split.segment_ids  # None for encoders without segment ids: zeros for BertModel
    np.savez(
        path,
        token_ids=split.token_ids,
        segment_ids=np.zeros_like(split.token_ids, np.int8) if segments is None else segments,
        row_splits=split.row_splits,
        labels=split.labels,
    )
    return str(path)


def epoch_pad_fraction(split: Any, padding: str, length: int, max_buckets: int) -> float:
    """Share of computed positions that are padding over one epoch of `make_dataset`."""
    from xtune.data.pipeline import make_dataset

    real = computed = 0
    batches = make_dataset(split, BATCH_SIZE, padding, length, True, SEED, max_buckets=max_buckets)
    for inputs, _ in batches:
        mask = inputs["padding_mask"].numpy()
        real, computed = real + int(mask.sum()), computed + mask.size
    return 1 - real / computed


# ---------------------------------------------------------------- sections


@dataclass
class Config:
    """One row of a section: an xtune run or a PyTorch stream, and how to warm it up."""

    measurement: Measurement
    xtune: XtuneRun | None = None
    torch_stream: str | None = None
    warmup_steps: int = 2
    torch_model: str = "model"  # which of the worker's models
    compiled: bool = False  # its torch.compile'd forward


def torch_run(torch: TorchClient, config: Config, steps: int) -> dict[str, Any]:
    return torch.call(
        "run",
        stream=config.torch_stream,
        precision=config.measurement.precision,
        steps=steps,
        model=config.torch_model,
        compiled=config.compiled,
    )


def interleave(
    configs: list[Config], torch: TorchClient | None, repeats: int, steps: int, shape: Shape
) -> list[Config]:
    """Warm every configuration up, then time `--steps` steps of each, repeat by repeat; the
    configurations that ran (a PyTorch one whose warm-up failed is reported and dropped)."""
    running = []
    for config in configs:
        measurement = config.measurement
        if config.xtune is not None:
            measurement.warmup_seconds = config.xtune.warm_up(config.warmup_steps)
        else:
            reply = torch_run(torch, config, config.warmup_steps)
            if "error" in reply:
                print(f"  {measurement.label}: left out, {reply['error']}", flush=True)
                continue
            measurement.warmup_seconds = reply["seconds"]
        running.append(config)
    for _ in range(repeats):
        for config in running:
            if config.xtune is not None:
                seconds, shapes, tokens = config.xtune.run(steps)
            else:
                reply = torch_run(torch, config, steps)
                seconds, shapes, tokens = reply["seconds"], reply["shapes"], reply["tokens"]
            config.measurement.add(seconds, shapes, tokens, shape)
    return running


def print_table(measurements: list[Measurement], peak: Peak, with_padding: bool) -> None:
    header = f"  {'configuration':<30}{'samples/s':>10}{'median':>8}{'tokens/s':>10}"
    header += f"{'GFLOP/s':>9}{'% peak':>8}{'warm-up s':>10}"
    if with_padding:
        header += f"{'pad % epoch':>12}{'pad % timed':>12}"
    if peak.datasheet_bf16 is not None:
        header += f"{'% sheet':>9}"
    print(header)
    print(f"  {'':<30}{'best':>10}{'':>8}{'non-pad':>10}")
    for m in measurements:
        k = m.fastest
        flops = m.flops[k] / m.seconds[k]
        compute_dtype = "bfloat16" if "bfloat16" in m.precision else "float32"
        line = f"  {m.label:<30}{m.best:>10.1f}{m.median:>8.1f}"
        line += f"{m.tokens[k] / m.seconds[k]:>10.0f}{flops / 1e9:>9.1f}"
        line += f"{100 * flops / peak.of(compute_dtype):>8.1f}{m.warmup_seconds:>10.1f}"
        if with_padding:
            epoch = "-" if m.pad_fraction_epoch is None else f"{100 * m.pad_fraction_epoch:.1f}"
            line += f"{epoch:>12}{100 * m.pad_fraction():>12.1f}"
        if peak.datasheet_bf16 is not None:
            sheet = (
                f"{100 * flops / peak.datasheet_bf16:.1f}" if compute_dtype == "bfloat16" else "-"
            )
            line += f"{sheet:>9}"
        print(line)


def ratio_line(name: str, numerator: Measurement, denominator: Measurement, target: float) -> str:
    value = numerator.best / denominator.best
    verdict = "met" if value >= target else "MISSED"
    return (
        f"  {name}: {numerator.label.strip()} {numerator.best:.1f} / "
        f"{denominator.label.strip()} {denominator.best:.1f} = {value:.2f}x "
        f"(target >= {target:.1f}x: {verdict})"
    )


def epoch_ratio_line(measurements: list[Measurement], mean_length: float) -> str:
    """xtune's best against PyTorch's best in projected epoch samples/s (`epoch_rate`)."""
    sides = {}
    for side in ("xtune", "torch"):
        mine = [m for m in measurements if m.label.startswith(side)]
        sides[side] = max(mine, key=lambda m: m.epoch_rate(mean_length), default=None)
    if None in sides.values():
        return "  per epoch: one side has no rows"
    rates = {side: m.epoch_rate(mean_length) for side, m in sides.items()}
    return (
        f"  per epoch (fastest window's padded tokens/s at the epoch's padding): "
        f"{sides['xtune'].label} {rates['xtune']:.1f} / {sides['torch'].label} "
        f"{rates['torch']:.1f} samples/s = {rates['xtune'] / rates['torch']:.2f}x"
    )


def fixed_cost_line(measurements: list[Measurement], steps: int) -> str:
    """The part of a step's time that does not shrink with its FLOPs (optimizer update, the
    dense embedding gradient, per-step overheads): the intercept of a straight line through
    seconds per step against FLOPs per step over every timed window of `measurements`."""
    flops = [f / steps for m in measurements for f in m.flops]
    seconds = [t / steps for m in measurements for t in m.seconds]
    slope, intercept = np.polyfit(flops, seconds, 1)
    fixed = measurements[0]
    fixed_step = statistics.median(fixed.seconds) / steps
    return (
        f"  time per step not proportional to FLOPs (fit over the xtune windows): "
        f"{1000 * intercept:.0f} ms of the {1000 * fixed_step:.0f} ms {fixed.label.strip()} "
        f"step; {1e-9 / slope:.0f} GFLOP/s on the rest"
    )


def free_runs(configs: list[Config]) -> None:
    import keras

    for config in configs:
        config.xtune = None
    keras.backend.clear_session()
    gc.collect()


def measure(
    configs: list[Config],
    torch: TorchClient | None,
    peak: Peak,
    repeats: int,
    steps: int,
    shape: Shape,
    with_padding: bool,
) -> list[Measurement]:
    """Time `configs` interleaved, re-measure the peak, print the table; the measurements of
    the configurations that ran."""
    running = interleave(configs, torch, repeats, steps, shape)
    peak.measure()
    measurements = [c.measurement for c in running]
    print_table(measurements, peak, with_padding=with_padding)
    return measurements


def torch_configs(
    stream: str, paddings: str, args: Any, warmup_steps: int, model: str = "model", tag: str = ""
) -> list[Config]:
    """PyTorch's rows for one stream: float32 and bfloat16 autocast, each also through
    `torch.compile` (unless --no-torch-compile), so its best configuration on this machine is
    the one xtune is compared with."""
    configs = []
    for compiled in (False, True) if args.torch_compile else (False,):
        for precision in torch_precisions(args):
            label = f"torch {'compiled ' if compiled else ''}{precision}{tag} {paddings}".strip()
            # A compiled model compiles again at the second padded length (dynamic shapes).
            steps = max(warmup_steps, 4) if compiled else warmup_steps
            configs.append(
                Config(
                    Measurement(label, precision),
                    torch_stream=stream,
                    warmup_steps=steps,
                    torch_model=model,
                    compiled=compiled,
                )
            )
    return configs


def torch_precisions(args: Any) -> list[str]:
    """PyTorch's precisions: `--torch-precisions`, or by default float32 and bfloat16 where
    bfloat16 is native (a GPU, a CPU with bf16 instructions) and float32 alone on other CPUs,
    where PyTorch's bfloat16 is emulated: 0.3 GFLOP/s matmuls and 2.1 samples/s on GoEmotions,
    5% of its float32, on a 2-core AMD EPYC (2026-12-05). The peak section still measures it."""
    if args.torch_precisions:
        return list(args.torch_precisions)
    import tensorflow as tf

    from xtune.training.trainer import cpu_supports_bfloat16

    gpu = args.device != "cpu" and bool(tf.config.list_physical_devices("GPU"))
    native = gpu or cpu_supports_bfloat16()
    return ["float32", "bfloat16"] if native else ["float32"]


def best_of(measurements: list[Measurement], side: str) -> Measurement | None:
    """The fastest configuration (best repeat) of one side ("xtune" or "torch")."""
    mine = [m for m in measurements if m.label.startswith(side)]
    return max(mine, key=lambda m: m.best) if mine else None


def print_ratios(measurements: list[Measurement], target: float) -> None:
    """xtune's best against PyTorch's best, and per precision, best against best."""
    xtune_best, torch_best = best_of(measurements, "xtune"), best_of(measurements, "torch")
    if torch_best is None:
        return
    print(ratio_line("xtune best / torch best", xtune_best, torch_best, target))
    for precision in ("float32", "bfloat16"):
        mine = [m for m in measurements if precision in m.precision]
        xtune_side, torch_side = best_of(mine, "xtune"), best_of(mine, "torch")
        if xtune_side is not None and torch_side is not None:
            print(f"  {precision}: xtune / torch = {xtune_side.best / torch_side.best:.2f}x")


def fixed_shape_section(
    name: str,
    encoder_spec: dict,
    vocabulary: list[str],
    torch: TorchClient | None,
    peak: Peak,
    args: Any,
    steps: int,
    warmup_steps: int,
    scratch: Path,
    updates: bool = False,
) -> None:
    """`updates`: xtune rows for each of `UPDATES`, not only Keras' AdamW."""
    from xtune.training.trainer import resolve_precision

    rows = BATCH_SIZE * max(steps, 4)
    split = tokenized(full_length_texts(vocabulary, rows), random_labels(rows), vocabulary, 128)
    assert int(split.lengths.min()) == FIXED_LENGTH, "texts must fill every row"
    configs = []
    for precision in ("float32", "mixed_bfloat16"):
        rows = [(update, "auto") for update in (UPDATES if updates else [""])]
        if updates and precision == resolve_precision("auto"):
            # One shape, so XLA compiles the step once (in the warm-up) wherever it runs.
            rows += [("", True), (" lazy fused", True)]
        for update, jit in rows:
            optimizer = UPDATES[update]
            run = XtuneRun(encoder_spec, precision, split, "fixed", FIXED_LENGTH, jit, optimizer)
            name = "bfloat16" if precision != "float32" else "float32"
            label = f"xtune {name}{update}{' xla' if jit is True else ''}"
            measurement = Measurement(label, precision)
            configs.append(Config(measurement, xtune=run, warmup_steps=warmup_steps))
    backbone = configs[0].xtune.backbone_config()
    shape = Shape(backbone["num_layers"], backbone["hidden_dim"], backbone["intermediate_dim"])
    torch_parameters = ""
    if torch is not None:
        torch.call("clear")
        parameters = torch.call("build", model=backbone)["parameters"]
        torch_parameters = f" (torch {parameters / 1e6:.1f}M)"
        path = save_split(split, scratch / f"{name}_fixed.npz")
        torch.call("load", name=f"{name}_fixed", path=path, padding="fixed", max_length=128)
        configs += torch_configs(f"{name}_fixed", "", args, warmup_steps)
    from xtune.model import count_parameters

    xtune_parameters = count_parameters(configs[0].xtune.model)["trainable"]
    print(
        f"\n== fixed shapes: {name}, {xtune_parameters / 1e6:.1f}M parameters{torch_parameters}, "
        f"length {FIXED_LENGTH}, batch {BATCH_SIZE}, {steps} steps x {args.repeats} "
        f"repeats ==  load {load_average()}",
        flush=True,
    )
    measurements = measure(configs, torch, peak, args.repeats, steps, shape, with_padding=False)
    print_ratios(measurements, 1.2)
    print(f"  load after: {load_average()}", flush=True)
    free_runs(configs)


def real_data_section(
    vocabulary: list[str],
    torch: TorchClient | None,
    peak: Peak,
    args: Any,
    steps: int,
    scratch: Path,
) -> None:
    from xtune.data.pipeline import MAX_BUCKETS
    from xtune.training.trainer import resolve_precision

    source = Path(args.data_root) / "goemotions" / "train.tsv"
    if not source.is_file():
        print(f"\n== real data: skipped, {source} not found (set --data-root) ==")
        return
    texts, labels = read_goemotions(source, args.rows)
    split = tokenized(texts, labels, vocabulary, REAL_DATA_LENGTH)
    precision = resolve_precision("auto")
    label_precision = "bfloat16" if "bfloat16" in precision else precision
    configs = []
    # (padding, optimizer variant, training.jit_compile): the last rows XLA-compile the step.
    # Bucketing takes up to 32 lengths where shapes are free, 8 where each compiles the step
    # (XLA); the "8 lengths" row is the earlier limit without XLA, for the difference.
    rows = [("fixed", "", "auto"), ("dynamic", "", "auto"), ("bucket", "", "auto")]
    rows += [(f"bucket {MAX_BUCKETS} lengths", "", "auto"), ("bucket", " fused", "auto")]
    rows += [("bucket", " lazy fused", "auto"), ("bucket", "", True)]
    rows += [("bucket", " lazy fused", True)]
    for name, update, jit in rows:
        padding, limit = name.split()[0], MAX_BUCKETS if name.endswith(" lengths") else None
        optimizer = UPDATES[update]
        run = XtuneRun(
            {"name": "minilm-l6"},
            precision,
            split,
            padding,
            REAL_DATA_LENGTH,
            jit,
            optimizer,
            max_buckets=limit,
        )
        label = f"xtune {label_precision} {name}{update}{' xla' if jit is True else ''}"
        measurement = Measurement(label, precision)
        measurement.pad_fraction_epoch = epoch_pad_fraction(
            split, padding, REAL_DATA_LENGTH, run.max_buckets
        )
        # XLA compiles each bucket's shape once: warm up through (nearly) all of them.
        configs.append(Config(measurement, xtune=run, warmup_steps=40 if jit is True else 4))
    backbone = configs[0].xtune.backbone_config()
    shape = Shape(backbone["num_layers"], backbone["hidden_dim"], backbone["intermediate_dim"])
    if torch is not None:
        torch.call("clear")
        torch.call("build", model=backbone)
        path = save_split(split, scratch / "goemotions.npz")
        # Per-batch padding in random batches, and in Hugging Face Trainer's length-grouped
        # order (`group_by_length=True`), PyTorch's answer to bucketing.
        for padding in ("dynamic", "grouped"):
            stream = f"goemotions_{padding}"
            loaded = torch.call("load", name=stream, path=path, padding=padding, max_length=64)
            for config in torch_configs(stream, padding, args, 4):
                config.measurement.pad_fraction_epoch = loaded["pad_fraction"]
                configs.append(config)
    print(
        f"\n== real data: GoEmotions, first {len(split)} train rows (mean "
        f"{split.lengths.mean():.1f} tokens, max {split.lengths.max()}), minilm-l6, "
        f"max length {REAL_DATA_LENGTH}, batch {BATCH_SIZE}, {steps} steps x "
        f"{args.repeats} repeats ==  load {load_average()}",
        flush=True,
    )
    measurements = measure(configs, torch, peak, args.repeats, steps, shape, with_padding=True)
    print_ratios(measurements, 2.0)
    print(epoch_ratio_line(measurements, float(split.lengths.mean())))
    dynamic = best_of([m for m in measurements if m.label.endswith(" dynamic")], "torch")
    if dynamic is not None:  # the comparison of earlier runs, which had no grouped rows
        print(
            f"  xtune best / torch dynamic (random batches): "
            f"{best_of(measurements, 'xtune').best / dynamic.best:.2f}x"
        )
    print(ratio_line("xtune bucket / xtune fixed", measurements[2], measurements[0], 3.0))
    print(fixed_cost_line(measurements[:3], steps))  # step_constant.py: per update mode
    print(f"  load after: {load_average()}", flush=True)
    free_runs(configs)


def random_id_split(vocabulary_size: int, rows: int, length: int) -> Any:
    """`rows` rows of `length` random ids (no segment ids, as XLM-R's packing has none)."""
    from xtune.data.pipeline import TokenizedSplit

    rng = np.random.default_rng(SEED)
    token_ids = rng.integers(4, vocabulary_size, rows * length).astype(np.int32)
    row_splits = np.arange(0, rows * length + 1, length, dtype=np.int64)
    return TokenizedSplit(token_ids, None, row_splits, random_labels(rows))


def e5_encoders(precision: str, pieces: int) -> tuple[Any, Any]:
    """multilingual-e5-small built under `precision`'s policy: full, and trimmed to `pieces`
    random rows (what `data.trim_vocabulary` keeps of a corpus)."""
    from xtune.encoders import load_encoder
    from xtune.encoders.trimmed_vocabulary import trim_encoder

    with global_policy(precision):
        full = load_encoder({"name": "multilingual-e5-small"})
        rng = np.random.default_rng(SEED)
        kept = rng.choice(full.tokenizer.vocabulary_size, pieces, replace=False)
        return full, trim_encoder(full, kept)


def e5_section(torch: TorchClient | None, peak: Peak, args: Any, scratch: Path) -> None:
    """multilingual-e5-small (BERT with XLM-R's 250,037-piece vocabulary) against the same
    architecture in transformers (random weights), full and trimmed vocabulary."""
    from xtune.training.trainer import resolve_precision

    rows, length, spec = BATCH_SIZE * 4, E5_LENGTH, {"name": "multilingual-e5-small"}
    configs, backbones = [], {}
    for precision in ("float32", "mixed_bfloat16"):
        full, trimmed = e5_encoders(precision, args.e5_pieces)
        for vocabulary, encoder in (("full", full), ("trimmed", trimmed)):
            split = random_id_split(encoder.tokenizer.vocabulary_size, rows, length)
            backbones[vocabulary] = (encoder.backbone.get_config(), split)
            updates = list(UPDATES) if vocabulary == "full" else ["", " fused"]
            rows_here = [(update, "auto") for update in updates]
            if precision == resolve_precision("auto"):  # the whole step in XLA (one shape)
                rows_here.append((" lazy fused" if vocabulary == "full" else "", True))
            for update, jit in rows_here:
                optimizer = UPDATES[update]
                run = XtuneRun(spec, precision, split, "fixed", length, jit, optimizer, encoder)
                name = "bfloat16" if precision != "float32" else "float32"
                label = f"xtune {name} {vocabulary}{update}{' xla' if jit is True else ''}"
                configs.append(Config(Measurement(label, precision), xtune=run, warmup_steps=1))
    backbone = backbones["full"][0]
    shape = Shape(backbone["num_layers"], backbone["hidden_dim"], backbone["intermediate_dim"])
    if torch is not None:
        torch.call("clear")
        for vocabulary, (config, split) in backbones.items():
            torch.call("build", model=config, name=vocabulary)
            path = save_split(split, scratch / f"e5_{vocabulary}.npz")
            stream = f"e5_{vocabulary}"
            torch.call("load", name=stream, path=path, padding="fixed", max_length=length)
            for precision in torch_precisions(args):
                configs.append(
                    Config(
                        Measurement(f"torch {precision} {vocabulary}", precision),
                        torch_stream=stream,
                        warmup_steps=1,
                        torch_model=vocabulary,
                    )
                )
    print(
        f"\n== multilingual-e5-small: {backbone['vocabulary_size']:,} or {args.e5_pieces:,} "
        f"pieces, length {length}, batch {BATCH_SIZE}, {args.e5_steps} steps x {args.repeats} "
        f"repeats ==  load {load_average()}",
        flush=True,
    )
    measurements = measure(configs, torch, peak, args.repeats, args.e5_steps, shape, False)
    print_ratios(measurements, 1.2)
    for vocabulary in ("full", "trimmed"):
        mine = [m for m in measurements if f" {vocabulary}" in m.label]
        xtune_side, torch_side = best_of(mine, "xtune"), best_of(mine, "torch")
        if xtune_side is not None and torch_side is not None:
            print(ratio_line(f"{vocabulary} vocabulary", xtune_side, torch_side, 1.2))
    print(f"  load after: {load_average()}", flush=True)
    free_runs(configs)


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="MiniLM only, fewer steps and rows")
    parser.add_argument(
        "--torch-python",
        default=str(REPO / ".venv-torch" / "bin" / "python"),
        help="interpreter with torch and transformers (benchmarks/requirements-torch.txt)",
    )
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="auto: each side on its GPU where it sees one; cpu: GPUs hidden; gpu: required",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per config")
    parser.add_argument("--steps", type=int, default=6, help="steps per window (MiniLM)")
    parser.add_argument("--bert-base-steps", type=int, default=1, help="steps per window")
    parser.add_argument("--real-steps", type=int, default=20, help="steps per window")
    parser.add_argument("--rows", type=int, default=8192, help="GoEmotions rows in the slice")
    parser.add_argument(
        "--torch-precisions",
        nargs="+",
        choices=["float32", "bfloat16"],
        help="PyTorch's precisions (default: bfloat16 too where native; see torch_precisions)",
    )
    parser.add_argument("--e5-steps", type=int, default=2, help="steps per window (e5)")
    parser.add_argument("--e5-pieces", type=int, default=6000, help="trimmed e5 vocabulary")
    parser.add_argument(
        "--no-torch-compile",
        dest="torch_compile",
        action="store_false",
        help="leave out PyTorch's torch.compile rows (each compiles for minutes on a CPU)",
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        default=["minilm", "bert-base", "real", "e5"],
        help="which to run",
    )
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = min(args.repeats, 2)
        args.steps, args.real_steps, args.rows = 4, 10, 2048
        args.sections = [s for s in args.sections if s not in ("bert-base", "e5")]
    return args


def start_torch(python: str, device_request: str) -> TorchClient | None:
    if not Path(python).is_file():
        print(
            f"PyTorch side skipped: {python} not found. Create it with\n"
            "  python3.11 -m venv .venv-torch && "
            ".venv-torch/bin/pip install -r benchmarks/requirements-torch.txt\n"
            "or pass --torch-python PATH."
        )
        return None
    return TorchClient(python, device_request)


def print_devices(gpu_names: list[str], torch_reply: dict[str, Any] | None) -> str | None:
    """Where each side runs, when a GPU is in play; the GPU's name (None on CPU)."""
    torch_gpu = None
    if torch_reply is not None and torch_reply["device"] != "cpu":
        torch_gpu = torch_reply["device_name"]
        print(f"PyTorch device: {torch_reply['device']} ({torch_gpu})")
    if gpu_names:
        print(f"xtune device: GPU {gpu_names[0]} (of {len(gpu_names)} visible; XLA on)")
    if torch_reply is not None and bool(gpu_names) != bool(torch_gpu):
        print("note: one side runs on a GPU and the other on the CPU: ratios compare devices")
    return gpu_names[0] if gpu_names else torch_gpu


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.torch_worker:
        return torch_worker_main(args.device)

    import xtune  # before TensorFlow loads: its settings (oneDNN on x86 CPUs), as a run gets them

    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "TensorFlow's default")
    import keras
    import tensorflow as tf

    from xtune.encoders.sources import minilm_folder, read_vocabulary

    tf.get_logger().setLevel("ERROR")  # retracing notes: the warm-up traces on purpose
    gpu_names = tensorflow_gpu_names(args.device)

    started = time.perf_counter()
    print(
        f"train_throughput: {time.strftime('%Y-%m-%d %H:%M')}; {machine_description()}; "
        f"load average {load_average()}"
    )
    print(
        f"xtune side: xtune {xtune.__version__}, TF {tf.__version__}, Keras {keras.__version__}, "
        f"numpy {np.__version__}, TF threads intra "
        f"{tf.config.threading.get_intra_op_parallelism_threads() or 'auto'}, "
        f"TF_ENABLE_ONEDNN_OPTS {onednn}"
    )
    torch = start_torch(args.torch_python, args.device)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        try:
            reply = None
            if torch is not None:
                reply = torch.call("versions")
                print(f"PyTorch side: {reply['versions']}, {reply['threads']} threads")
            peak = Peak(torch, print_devices(gpu_names, reply))
            peak.measure()
            minilm_vocabulary = read_vocabulary(minilm_folder() / "vocab.txt")
            if "minilm" in args.sections:
                fixed_shape_section(
                    "minilm-l6",
                    {"name": "minilm-l6"},
                    minilm_vocabulary,
                    torch,
                    peak,
                    args,
                    args.steps,
                    2,
                    scratch,
                    updates=True,
                )
            if "bert-base" in args.sections:
                vocabulary_path = bert_base_vocabulary(Path(args.data_root), scratch)
                spec = {"name": "random", "vocabulary": str(vocabulary_path), **BERT_BASE_SHAPE}
                fixed_shape_section(
                    "bert-base-shaped (random)",
                    spec,
                    read_vocabulary(vocabulary_path),
                    torch,
                    peak,
                    args,
                    args.bert_base_steps,
                    1,
                    scratch,
                )
            if "real" in args.sections:
                real_data_section(minilm_vocabulary, torch, peak, args, args.real_steps, scratch)
            if "e5" in args.sections:
                e5_section(torch, peak, args, scratch)
        finally:
            if torch is not None:
                torch.close()
        peak.print()
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
