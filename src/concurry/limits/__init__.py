"""Rate, call and resource limits, and the sets and pools that enforce them together."""

from .definitions import CallLimit, Limit, RateLimit, ResourceLimit
from .limit_pool import LimitPool
from .limit_set import Acquisition, LimitSet

__all__ = ["Acquisition", "CallLimit", "Limit", "LimitPool", "LimitSet", "RateLimit", "ResourceLimit"]
