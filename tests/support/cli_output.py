"""Output of the CLI that several test modules compare against."""

from __future__ import annotations

from typing import Final

#: verify without --cluster where the environment requires the cluster view (issue 15)
OFFLINE_WARNING: Final = (
    "  warning: approvalgate could not check offline (pass --cluster): rejections and "
    "withdrawals recorded in the cluster; whether the approval was already used by another "
    "run; whether the approvals bind the current content of the ImplementationSpecs, Agent and "
    "AgentProvider the run executes\n"
)
