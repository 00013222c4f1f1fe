"""The registry of CNI flavors: the values ``egress.flavor`` accepts, in this order.

A new flavor: one module here defining a :class:`~approvalgate.compiler.egress.flavor.Flavor`
and one entry below.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from approvalgate.compiler.egress.flavor import Flavor
from approvalgate.compiler.egress.flavors import cilium, kubernetes

FLAVORS: Mapping[str, Flavor] = MappingProxyType(
    {flavor.name: flavor for flavor in (kubernetes.FLAVOR, cilium.FLAVOR)}
)

__all__ = ["FLAVORS"]
