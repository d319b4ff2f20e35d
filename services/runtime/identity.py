"""Ownership rule shared by every service that holds a user's data (grpc-free).

The gateway puts the verified token subject in the caller header. A call without it comes from a
trusted in-mesh workload (the mesh's mTLS and authorization policies decide who that may be).
"""

from __future__ import annotations

from services.runtime.errors import PermissionDenied


def ensure_in_mesh(caller: str | None, what: str) -> None:
    """Refuse an end user (a call through the gateway) on a call meant for in-mesh workloads."""
    if caller is not None:
        raise PermissionDenied(
            f"{what} is an in-mesh call, not open to users", reason="IN_MESH_ONLY"
        )


def ensure_owner(caller: str | None, owner_user_id: str) -> None:
    if caller is not None and caller != owner_user_id:
        raise PermissionDenied("the caller may only access their own data", reason="NOT_OWNER")
