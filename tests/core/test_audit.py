"""The audit trail's scrubbing of secrets (services/audit.py), on any details a caller may pass."""

from __future__ import annotations

from hypothesis import given, strategies as st

from homeserver.services.audit import MAX_DETAIL_TEXT, scrub

SECRET_NAMES = ["password", "new_password", "access_token", "registration_shared_secret", "signing_key", "mac",
                "signatures", "nonce", "Refresh_Token"]


def test_secret_named_details_are_dropped_at_any_depth():
    details = {name: "hunter2" for name in SECRET_NAMES}
    details.update(reason="wrong guess count", nested={"token": "syt_x", "kept": 1}, virus="Eicar-Test-Signature")
    assert scrub(details) == {"reason": "wrong guess count", "nested": {"kept": 1}, "virus": "Eicar-Test-Signature"}


@given(st.dictionaries(st.sampled_from(SECRET_NAMES + ["reason", "kind", "path"]), st.text(max_size=1000)))
def test_no_secret_name_survives_and_texts_are_bounded(details):
    clean = scrub(details)
    assert not set(clean) & set(SECRET_NAMES)
    assert all(len(v) <= MAX_DETAIL_TEXT for v in clean.values())
