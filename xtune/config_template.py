"""`xtune init`: a commented run config to start from (it parses as it is, on the bundled
sample)."""

from __future__ import annotations

# Every value below is the default or a setting the demo uses; the comments list the choices.
# tests/test_cli.py checks that it parses and that a dry run of it passes.
TEMPLATE = """\
# An xtune run config: `xtune train THIS_FILE` trains one run, `--set KEY=VALUE` overrides a
# key (`--set training.epochs=2`). `xtune list` shows every encoder, head, loss, optimizer,
# schedule, task, sampler and metric with its arguments and defaults. An unknown key or name
# is an error that lists the valid ones.

data:
  root: .                                   # folder the file names below are relative to
  train: data/sample_appeals/train.csv      # csv, tsv/txt, jsonl/json, xlsx
  dev: data/sample_appeals/dev.csv          # leave out: a seeded, label-stratified split of train
  test: data/sample_appeals/test.csv        # optional; scored once, with the kept weights
  text: title                               # the text column (dots reach into JSON objects)
  text_pair: body                           # optional second segment; null for none
  labels: labels                            # the label column
  label_format: delimited                   # delimited ("a|b") | list (JSON list) | columns (0/1)
  label_separator: "|"
  max_length: 128                           # tokens per example, both segments together
  truncation: head_tail                     # head | tail | head_tail (first head_tokens + the end)
  head_tokens: 48
  bad_rows: error                           # error | skip (each skipped row is reported)
  unknown_labels: error                     # labels unseen in train: skip_rows | ignore_labels
  encoding: utf-8                           # of csv/tsv/json files, e.g. gb18030

encoder: minilm-l6                          # multilingual-e5-small, {name: hf, path: FOLDER}, ...
head: {name: pooling, pooling: mean, dropout: 0.1}
loss: bce                                   # focal, multilabel_ce, softmax_ce (single-label)
optimizer: {name: adamw, learning_rate: 2.0e-4, weight_decay: 0.01}
schedule: {name: linear, warmup_ratio: 0.1}
adversarial: none                           # fgm, pgd: perturb the word embeddings

finetune:
  freeze_encoder: false                     # train the head only
  frozen_epochs: 0                          # head-only epochs before the encoder trains too
  lora_rank: null                           # e.g. 8: LoRA adapters instead of full fine-tuning

training:
  epochs: 4
  batch_size: 16
  seed: 0
  metric: subset_accuracy                   # dev metric that picks the best epoch (micro_f1, ...)
  early_stopping_patience: null             # stop after this many epochs without improvement
  tune_thresholds: auto                     # tuned for `metric` on dev: per_label_f1 | null
  decision_rule: auto                       # served: auto (tuned if better on dev) | default
  report_thresholds: []                     # e.g. [0.3]: also score at fixed thresholds
  output_dir: runs                          # each run gets runs/<time>/ (config, labels, weights)
  mixed_precision: auto                     # float32 | mixed_bfloat16 | mixed_float16
  report_to: []                             # [tensorboard]: events in runs/<time>/tensorboard/
  checkpoints: true                         # per-epoch state: `xtune train CONFIG --resume`
"""
