"""xtune: fine-tune BERT-family encoders for (multi-label) text classification with Keras 3."""

__version__ = "0.1.0"
