"""approvalgate: recorded approvals for agents.proompteng.ai AgentRuns, enforced at admission."""

__version__ = "0.1.0"
