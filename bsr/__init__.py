"""Reproduction of BSR: A Balanced Framework for Single Image Super Resolution."""

__version__ = "0.1.0"


class BsrError(Exception):
    """An error caused by the user's input: printed as one line, never as a traceback."""

# The resize convention that `bsr degrade` and `bsr eval-bicubic` reproduce (MATLAB's imresize on uint8, rounded
# after each 1-D pass; see bsr.degrade). It is part of their commands in both engines, so that a pipeline made
# under an earlier convention reruns those jobs, and everything downstream of them, once.
RESIZE_CONVENTION = "matlab-uint8"
