"""The pure kmmio engine (kmmio.c without the page tables): no I/O, no ptrace."""

from kmmio.engine.core import FaultContext, Kmmio, Stats, coalesce
from kmmio.engine.effects import FaultAction, FaultDecision, Protect, StepCondition
from kmmio.engine.pages import PROT_EXEC, PROT_NONE, PROT_READ, PROT_WRITE, FaultPage, PageTable
from kmmio.engine.probe import Probe, ProbeRegistry

__all__ = [
    "PROT_EXEC",
    "PROT_NONE",
    "PROT_READ",
    "PROT_WRITE",
    "FaultAction",
    "FaultContext",
    "FaultDecision",
    "FaultPage",
    "Kmmio",
    "PageTable",
    "Probe",
    "ProbeRegistry",
    "Protect",
    "Stats",
    "StepCondition",
    "coalesce",
]
