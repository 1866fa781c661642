"""Secrets: which keys are secret, masking in answers, and in task logs even across chunk boundaries."""

import pytest

from flowforge.core.secrets import LogMasker, is_secret_key, mask_mapping, secret_values


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
