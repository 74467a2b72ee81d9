"""quantlab's exception hierarchy.

Every error quantlab raises on purpose derives from :class:`QuantlabError`, so a caller can
catch one type.  Each subclass also derives from the built-in exception a Python programmer
would expect (``ValueError`` for bad values, ``KeyError`` for unknown names, ...), so existing
``except ValueError`` code keeps working.  Messages say what was wrong *and* what is accepted.
"""


class QuantlabError(Exception):
    """Base class of every error quantlab raises deliberately."""


class FormatError(QuantlabError, ValueError):
    """Unknown format name, unsupported option or value a format cannot encode."""


class ShapeError(QuantlabError, ValueError):
    """Array shape or length that does not fit the format (e.g. not a multiple of the block)."""


class InputError(QuantlabError, ValueError):
    """Bad input data: wrong dtype, NaN/Inf where they are not allowed, empty arrays, ..."""


class GGUFError(QuantlabError, ValueError):
    """A GGUF / safetensors / imatrix file that is truncated, corrupt or inconsistent."""


class ModelError(QuantlabError, ValueError):
    """A model file quantlab cannot run (architecture, missing metadata, context too long, ...)."""


class KernelError(QuantlabError, ValueError):
    """A compiled kernel was called with buffers of the wrong dtype, shape or alignment."""
