"""The one exception type the ``onceflow`` command turns into a one-line error."""

__all__ = ["OnceflowError"]


class OnceflowError(RuntimeError):
    """A problem the user can fix; its message says what happened and what to do."""
