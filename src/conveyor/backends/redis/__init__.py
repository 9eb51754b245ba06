"""The Redis engine: every state transition one Lua script, leases on the server's clock."""

from conveyor.backends.redis.backend import RedisBackend

__all__ = ["RedisBackend"]
