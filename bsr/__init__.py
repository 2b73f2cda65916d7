"""Reproduction of BSR: A Balanced Framework for Single Image Super Resolution."""

__version__ = "0.1.0"


class BsrError(Exception):
    """An error caused by the user's input: printed as one line, never as a traceback."""
