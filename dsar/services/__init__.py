"""Every state change of a data subject request. The API, the admin, the portal, Celery
tasks and commands call these and nothing else."""

from dsar.services.actions import (
    request_perform_direct,
    restriction_lift,
    restriction_lift_announce,
)
from dsar.services.execution import (
    RunOutcome,
    WatchdogReport,
    exports_purge_expired,
    request_finalize,
    request_record_keep,
    request_records_purge,
    request_retry_failed,
    source_task_execute,
    source_tasks_watchdog,
)
from dsar.services.lifecycle import (
    request_approve,
    request_cancel,
    request_create,
    request_extend,
    request_reject,
    request_start,
    request_verify,
)
from dsar.services.oversight import (
    erasure_records_estimate,
    request_assign,
    request_first_approval,
)
from dsar.services.verification import verification_code_check, verification_code_send

__all__ = [
    "RunOutcome",
    "WatchdogReport",
    "erasure_records_estimate",
    "exports_purge_expired",
    "request_approve",
    "request_assign",
    "request_cancel",
    "request_create",
    "request_extend",
    "request_finalize",
    "request_first_approval",
    "request_perform_direct",
    "request_record_keep",
    "request_records_purge",
    "request_reject",
    "request_retry_failed",
    "request_start",
    "request_verify",
    "restriction_lift",
    "restriction_lift_announce",
    "source_task_execute",
    "source_tasks_watchdog",
    "verification_code_check",
    "verification_code_send",
]
