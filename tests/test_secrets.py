"""Secrets: which keys are secret, masking in answers, and in task logs even across chunk boundaries."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowforge.core.secrets import MASK, LogMasker, SecretText, is_secret_key, mask_mapping, secret_values
from flowforge.core.sourcemask import UNREADABLE, mask_source


@pytest.mark.parametrize(
    "key, secret",
    [
        ("DB_PASSWORD", True),
        ("api_token", True),
        ("SecretSauce", True),
        ("AWS_ACCESS_KEY_ID", True),
        ("passwd", True),
        ("STAGE", False),
        ("REGION", False),
        ("monkey", True),
    ],
)
def test_secret_keys(key, secret):
    assert is_secret_key(key) is secret


def test_mask_mapping_hides_values_of_secret_keys_only():
    assert mask_mapping({"DB_PASSWORD": "hunter22", "STAGE": "prod"}) == {
        "DB_PASSWORD": "***",
        "STAGE": "prod",
    }


def test_secret_values_are_longest_first_and_skip_tiny_ones():
    assert secret_values({"A_TOKEN": "abcd", "B_KEY": "abcdefgh", "C_KEY": "ab", "STAGE": "prodprod"}) == [
        "abcdefgh",
        "abcd",
    ]


def feed_all(masker: LogMasker, chunks: list[str]) -> str:
    return "".join(masker.feed(c) for c in chunks) + masker.flush()


@pytest.mark.parametrize(
    "chunks",
    [
        ["password is hunter22 ok\n"],
        ["password is hun", "ter22 ok\n"],
        ["password is h", "u", "n", "t", "e", "r", "2", "2 ok\n"],
        ["password is hunter2", "2 ok\n"],
    ],
)
def test_log_masker_masks_across_chunk_boundaries(chunks):
    assert feed_all(LogMasker(["hunter22"]), chunks) == "password is *** ok\n"


def test_log_masker_releases_a_held_back_prefix_that_was_not_a_secret():
    masker = LogMasker(["hunter22"])
    assert masker.feed("the hunt") == "the "
    assert masker.feed("ing season\n") == "hunting season\n"
    assert masker.flush() == ""


def test_log_masker_without_secrets_is_a_pass_through():
    masker = LogMasker([])
    assert masker.feed("anything") == "anything" and masker.flush() == ""


# -- the masker reads each character once, and hides every part of every occurrence -----------------
def reference_mask(text: str, secrets: list[str]) -> str:
    """Every occurrence of every secret covered; overlapping occurrences become one ***."""
    spans = sorted((i, i + len(s)) for s in secrets if s for i in range(len(text)) if text.startswith(s, i))
    merged: list[list[int]] = []
    for a, b in spans:
        if merged and a < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    out, at = [], 0
    for a, b in merged:
        out += [text[at:a], MASK]
        at = b
    return "".join(out) + text[at:]


@settings(max_examples=300, deadline=None)
@given(
    secrets=st.lists(st.text("abc", min_size=1, max_size=6), min_size=1, max_size=5),
    text=st.text("abcd", max_size=60),
    cuts=st.lists(st.integers(0, 60), max_size=8),
)
def test_log_masker_matches_a_plain_search_whatever_the_chunks(secrets, text, cuts):
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    chunks = [text[a:b] for a, b in pairwise(bounds)]
    assert feed_all(LogMasker(secrets), chunks) == reference_mask(text, secrets)


def test_overlapping_secrets_leave_no_part_visible():
    # A longer secret that starts inside a shorter one, and one that ends inside the next.
    assert feed_all(LogMasker(["bc", "abcd"]), ["xabcdx"]) == "x***x"
    assert feed_all(LogMasker(["abc", "cde"]), ["abcde"]) == "***"
    assert feed_all(LogMasker(["abc", "def"]), ["abcdef"]) == "******"  # touching, not overlapping


def test_log_masker_holds_back_only_what_may_still_be_a_secret():
    masker = LogMasker(["b" + "a" * 1000])
    assert masker.feed("a" * 5000) == "a" * 5000  # no `b`: nothing can start a secret
    assert masker.feed("xb" + "a" * 10) == "x"
    assert masker.feed("a" * 990) == MASK
    assert masker.flush() == ""


def test_secret_text_masks_values_wherever_text_shows_them():
    secrets = SecretText(["hunter22"])
    assert secrets.text("psql -p hunter22 db") == "psql -p *** db"
    assert secrets.text(5) == 5
    assert secrets.mapping({"DB_PASSWORD": "x", "COPY": "hunter22", "STAGE": "prod"}) == {
        "DB_PASSWORD": MASK,
        "COPY": MASK,
        "STAGE": "prod",
    }
    assert SecretText([]).text("hunter22") == "hunter22"


def test_a_source_the_parser_cannot_read_is_not_shown():
    assert mask_source("env: {DB_PASSWORD: [unclosed\n") == UNREADABLE
    assert mask_source("id: plain\n") == "id: plain\n"  # no secret-named key: returned as it is
