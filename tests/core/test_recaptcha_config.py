"""The reCAPTCHA keys (Synapse's enable_registration_captcha, recaptcha_*): what the parser accepts."""

from __future__ import annotations

import pytest

from homeserver.config import ConfigError, parse_config

BASE = {"server_name": "example.org", "signing_key_path": "/dev/null", "listeners": [{"port": 8008}]}


def test_defaults_and_keys():
    config = parse_config(dict(BASE), "/tmp/h.yaml")
    assert (config.enable_registration_captcha, config.recaptcha_private_key) == (False, None)
    assert config.recaptcha_siteverify_api == "https://www.recaptcha.net/recaptcha/api/siteverify"
    config = parse_config(dict(BASE, enable_registration=True, enable_registration_captcha=True,
                               recaptcha_public_key="pub", recaptcha_private_key="s3cr3t-k3y"), "/tmp/h.yaml")
    assert (config.recaptcha_public_key, config.recaptcha_private_key) == ("pub", "s3cr3t-k3y")
    assert "s3cr3t-k3y" not in repr(config)


@pytest.mark.parametrize("extra, message", [
    ({"enable_registration_captcha": True, "recaptcha_public_key": "pub"}, "enable_registration_captcha:"),
    ({"enable_registration_captcha": True, "recaptcha_private_key": "priv"}, "enable_registration_captcha:"),
    ({"recaptcha_siteverify_api": "ftp://x.example/v"}, "recaptcha_siteverify_api:"),
    ({"recaptcha_private_key": ""}, "recaptcha_private_key:"),
])
def test_bad_settings_are_refused(extra, message):
    with pytest.raises(ConfigError) as e:
        parse_config(dict(BASE, **extra), "/tmp/h.yaml")
    assert str(e.value).startswith(message), str(e.value)
