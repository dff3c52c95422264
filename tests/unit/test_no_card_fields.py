"""D7: no payment card data anywhere. No table of the cell database or the key store has a
column meant for card data; card numbers inside customer data are redacted (redaction tests)."""

from __future__ import annotations

import re

from sealflow.db import tables
from sealflow.vault import keystore

CARD_LIKE = re.compile(r"(^|_)(card|cards|pan|cvv|cvc|cvv2|cid|iban|ccn|cc_number|"
                       r"card_number|expiry_month|expiry_year|exp_month|exp_year)($|_)")


def test_no_column_of_any_schema_is_meant_for_card_data() -> None:
    found = [f"{t.name}.{c.name}"
             for metadata in (tables.metadata, keystore.metadata)
             for t in metadata.sorted_tables for c in t.columns
             if CARD_LIKE.search(c.name.lower()) or CARD_LIKE.search(t.name.lower())]
    assert found == []


def test_the_check_does_see_a_card_column() -> None:
    assert CARD_LIKE.search("card_number") and CARD_LIKE.search("billing_pan")
    assert not CARD_LIKE.search("company") and not CARD_LIKE.search("expansion")
