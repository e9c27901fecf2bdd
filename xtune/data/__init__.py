"""Data: table readers, label vocabulary, tokenization with truncation, tf.data pipelines."""
