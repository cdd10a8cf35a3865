"""Search spaces: :class:`SearchSpace` and :func:`load_space`."""

from nas.space._space import SearchSpace, load_space

__all__ = ["SearchSpace", "load_space"]
