"""The Redis backend (``redis://``, ``rediss://``): see ``driver`` for its key layout, scripts and durability."""

from .driver import RedisDriver

__all__ = ["RedisDriver"]
