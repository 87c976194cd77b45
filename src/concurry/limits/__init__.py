"""Rate, call and resource limits, and the sets and pools that enforce them together."""

from . import ray_store  # noqa: F401  registers mode="ray" sets (Ray is imported only when one is made)
from .definitions import CallLimit, Limit, RateLimit, ResourceLimit
from .limit_pool import LimitPool
from .limit_set import Acquisition, LimitSet

__all__ = ["Acquisition", "CallLimit", "Limit", "LimitPool", "LimitSet", "RateLimit", "ResourceLimit"]
