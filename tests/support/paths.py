"""Where the repository and ../shared are (CI checks out shared/ beside the repo)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("APPROVALGATE_SHARED", ROOT.parent / "shared")).resolve()
