"""``ConformanceSuite``: every behaviour and decision of SPEC §2–3 and §9, as one class a backend's tests subclass.

Needs pytest, pytest-asyncio and hypothesis (``pip install taskstore[test]``); ``taskstore.testing``
imports it only when asked for, so its app helpers (``drain``, ``run_until_complete``) need none of them.
"""

from ._base import SuiteBase
from .suite_admin import AdminTests
from .suite_attempts import AttemptHistoryTests
from .suite_chains import ChainTests
from .suite_claim import ClaimTests
from .suite_create import CreateTests
from .suite_expiry import ExpiryTests
from .suite_flow_mix import FlowMixTests
from .suite_groups import GroupTests, MemberGroupTests
from .suite_join import JoinTests
from .suite_lease import LeaseTests
from .suite_limits import LimitTests
from .suite_maintenance import MaintenanceTests
from .suite_open import OpenTests
from .suite_pause import PauseTests
from .suite_process import ProcessTests
from .suite_recovery import RecoveryTests
from .suite_schedule import RecurringOwnerTests, ScheduleTests
from .suite_statuses import StatusTests, WatchTests
from .suite_unique import UniqueTemplateTests, UniqueTests
from .suite_validation import ValidationTests
from .suite_why import WhyTests


class ConformanceSuite(
    CreateTests,
    ClaimTests,
    LeaseTests,
    AdminTests,
    AttemptHistoryTests,
    MaintenanceTests,
    RecoveryTests,
    OpenTests,
    ProcessTests,
    JoinTests,
    ScheduleTests,
    RecurringOwnerTests,
    GroupTests,
    MemberGroupTests,
    ChainTests,
    StatusTests,
    WatchTests,
    ValidationTests,
    UniqueTemplateTests,
    UniqueTests,
    PauseTests,
    LimitTests,
    ExpiryTests,
    WhyTests,
    FlowMixTests,
    SuiteBase,
):
    """Every behaviour and decision of SPEC §2–3 and §9 (flow control), against one backend."""
