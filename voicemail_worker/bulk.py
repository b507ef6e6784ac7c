"""Bulk updates, the producer side (`tasks.bulk`; see the package's docstring)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._load import tasks_module

if TYPE_CHECKING:
    from tasks.bulk import (
        BulkStatus,
        RevertRefused,
        bulk_cancelled,
        bulk_failures,
        bulk_status,
        cancel_bulk,
        cancel_revert,
        change_bulk,
        list_bulks,
        pause_bulk,
        resume_bulk,
        retry_bulk,
        revert_bulk,
        submit_bulk,
    )

__all__ = [
    "BulkStatus",
    "RevertRefused",
    "bulk_cancelled",
    "bulk_failures",
    "bulk_status",
    "cancel_bulk",
    "cancel_revert",
    "change_bulk",
    "list_bulks",
    "pause_bulk",
    "resume_bulk",
    "retry_bulk",
    "revert_bulk",
    "submit_bulk",
]

if not TYPE_CHECKING:
    _bulk = tasks_module("bulk")
    globals().update({name: getattr(_bulk, name) for name in __all__})
