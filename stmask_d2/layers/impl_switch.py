"""A process-wide choice among named implementations of one op (the CPU deformable conv, the CPU RoIAlign), so that
benchmarks and tests can compare them; the first name is the default."""
from typing import Optional, Sequence

__all__ = ["ImplSwitch"]


class ImplSwitch:
    """``select(name)`` sets the implementation and returns the previous one (``select()`` only reads it);
    ``current`` is the one in use, ``default`` the first of ``choices``."""

    def __init__(self, what: str, choices: Sequence[str]):
        self.what = what
        self.choices = tuple(choices)
        self.current = self.choices[0]

    @property
    def default(self) -> str:
        return self.choices[0]

    def select(self, name: Optional[str] = None) -> str:
        prev = self.current
        if name is not None:
            if name not in self.choices:
                raise ValueError(f"{self.what} must be one of {self.choices}, got {name!r}")
            self.current = name
        return prev
