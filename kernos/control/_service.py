"""The one entry point the faces use: runs, approvals, administration, bulk actions, retention."""

from __future__ import annotations

from pathlib import Path

from kernos.control._admin import AdminService
from kernos.control._approvals import ApprovalService
from kernos.control._audit import Auditor
from kernos.control._auth import Authenticator
from kernos.control._bulk import BulkActions
from kernos.control._insights import Insights
from kernos.control._policies import PolicyService
from kernos.control._retention import RetentionSweeper
from kernos.control._runs import RunService
from kernos.control._webhook_service import WebhookService
from kernos.runtime import Kernos

__all__ = ["Service"]


class Service:
    """Tenant-scoped, role-checked, audited operations over one Kernos app.

    The REST API, the dashboard and the local CLI all call these; none of them
    reaches the store another way.
    """

    def __init__(self, app: Kernos, *, archive_dir: Path | None = None) -> None:
        self.app = app
        self.audit = Auditor(app.store)
        self.auth = Authenticator(app.store, auditor=self.audit)
        self.runs = RunService(app, self.audit)
        self.admin = AdminService(app.store, self.audit)
        self.bulk = BulkActions(self.runs, self.audit)
        self.approvals = ApprovalService(app, self.audit)
        self.insights = Insights(app.store)
        self.retention = RetentionSweeper(app.store, self.audit, archive_dir)
        self.webhooks = WebhookService(app.store, self.audit)
        self.policies = PolicyService(app.store, self.runs, self.audit)
