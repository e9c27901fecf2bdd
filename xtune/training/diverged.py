"""`TrainingDiverged`, free of TensorFlow imports so the command line can catch it cheaply."""


class TrainingDiverged(ValueError):
    """The training loss became non-finite or exploded; the message names the epoch and the
    learning rate, and a lower learning rate (or `optimizer.clipnorm`) is the usual cure."""
