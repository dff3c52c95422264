"""Redaction (S5, D7): known secret values in every wire form, field-name rules, token
formats and card numbers, masked before anything is stored, logged or returned.

Pure: no I/O, no logging. The entry point is `Redactor` (redactor.py); `STATIC` serves where
no execution is in scope.
"""

from sealflow.redaction.detectors import DETECTORS
from sealflow.redaction.policy import RedactionPolicy
from sealflow.redaction.redactor import FIELD_REPLACEMENT, STATIC, Redactor
from sealflow.redaction.rules import ALWAYS_MASKED_HEADERS, DEFAULT_FIELD_NAMES

__all__ = [
    "ALWAYS_MASKED_HEADERS",
    "DEFAULT_FIELD_NAMES",
    "DETECTORS",
    "FIELD_REPLACEMENT",
    "STATIC",
    "RedactionPolicy",
    "Redactor",
]
