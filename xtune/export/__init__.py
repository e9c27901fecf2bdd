"""Export a trained run as a SavedModel that takes raw strings; label tables with it.

`ExportError` lives here, free of TensorFlow imports, so the command line can catch it cheaply.
"""


class ExportError(RuntimeError):
    """An export was refused: its output would be wrong or would clobber something."""
