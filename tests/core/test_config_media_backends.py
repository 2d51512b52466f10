"""Configuration of the media backends: content_scanner, media_storage_providers (Synapse's S3 module
shape), url_preview_* and max_spider_size; wrong values refused at start with the key path."""

from __future__ import annotations

import logging

import pytest

from homeserver.config.media_backends import ContentScannerConfig, StorageProviderConfig
from homeserver.config.values import parse_size
from homeserver.config import ConfigError
from tests.core.test_config import CONFIG_LOGGER, cfg_dir, config_warnings, parse, refused  # noqa: F401 (fixture)

S3 = {"module": "s3_storage_provider.S3StorageProviderBackend", "store_local": True, "store_remote": True,
      "store_synchronous": True, "config": {"bucket": "media", "endpoint_url": "http://127.0.0.1:9000",
                                            "region_name": "eu-west-3", "access_key_id": "AK",
                                            "secret_access_key": "SECRET-VALUE"}}


def test_defaults(cfg_dir):
    c = parse(cfg_dir)
    assert (c.content_scanner, c.media_storage_providers, c.url_preview_enabled) == (None, [], False)
    assert (c.url_preview_ip_range_blacklist, c.url_preview_ip_range_whitelist) == (None, [])
    assert (c.url_preview_url_blacklist, c.max_spider_size) == ([], 10 * 1024 * 1024)


def test_content_scanner(cfg_dir):
    assert parse(cfg_dir, content_scanner={"clamd": "tcp://127.0.0.1:3310"}).content_scanner == \
        ContentScannerConfig("tcp://127.0.0.1:3310", True)
    assert parse(cfg_dir, content_scanner={"clamd": "unix:/run/clamav/clamd.ctl", "fail_closed": False}
                 ).content_scanner == ContentScannerConfig("unix:/run/clamav/clamd.ctl", False)


@pytest.mark.parametrize("value,prefix", [
    ({}, "content_scanner.clamd: must be a string"),
    ({"clamd": "127.0.0.1:3310"}, "content_scanner.clamd: expected tcp://HOST:PORT"),
    ({"clamd": "unix:clamd.sock"}, "content_scanner.clamd: unix:PATH needs an absolute"),
    ({"clamd": "tcp://h:1", "fail_closed": "yes"}, "content_scanner.fail_closed: must be true or false"),
    ("tcp://h:1", "content_scanner: must be a mapping"),
])
def test_content_scanner_refused(cfg_dir, value, prefix):
    refused(cfg_dir, prefix, content_scanner=value)


def test_s3_provider_carries_over(cfg_dir, caplog):
    entry = {**S3, "config": {**S3["config"], "threadpool_size": 40}}
    with caplog.at_level(logging.WARNING, logger=CONFIG_LOGGER):
        c = parse(cfg_dir, media_storage_providers=[entry])
    assert c.media_storage_providers == [StorageProviderConfig(S3["module"], S3["config"], True, True, True)]
    assert any("media_storage_providers[0].config.threadpool_size" in w for w in config_warnings(caplog))
    assert "SECRET-VALUE" not in repr(c)
    flags = parse(cfg_dir, media_storage_providers=[{"module": S3["module"], "config": {"bucket": "b"}}])
    assert flags.media_storage_providers[0] == StorageProviderConfig(S3["module"], {"bucket": "b"})


@pytest.mark.parametrize("entry,prefix", [
    ({**S3, "module": "file_system"}, "media_storage_providers[0].module: only s3_storage_provider"),
    ({**S3, "config": {"endpoint_url": "x"}}, "media_storage_providers[0].config.bucket: must be"),
    ({**S3, "config": {"bucket": "b", "access_key_id": "AK"}},
     "media_storage_providers[0].config: set both access_key_id and secret_access_key"),
    ({**S3, "store_local": "yes"}, "media_storage_providers[0].store_local: must be true or false"),
    ({**S3, "config": None}, "media_storage_providers[0].config: must be a mapping"),
    ("s3", "media_storage_providers[0]: must be a mapping"),
])
def test_s3_provider_refused(cfg_dir, entry, prefix):
    msg = refused(cfg_dir, prefix, media_storage_providers=[entry])
    assert "SECRET-VALUE" not in msg


def test_url_preview(cfg_dir):
    refused(cfg_dir, "url_preview_enabled: needs url_preview_ip_range_blacklist", url_preview_enabled=True)
    c = parse(cfg_dir, url_preview_enabled=True, url_preview_ip_range_blacklist=["10.0.0.0/8"],
              url_preview_ip_range_whitelist=["10.1.0.0/16"], url_preview_url_blacklist=[{"netloc": "*.x"}],
              max_spider_size="1M")
    assert (c.url_preview_ip_range_blacklist, c.url_preview_ip_range_whitelist) == (["10.0.0.0/8"], ["10.1.0.0/16"])
    assert (c.url_preview_url_blacklist, c.max_spider_size) == ([{"netloc": "*.x"}], 1024 * 1024)
    refused(cfg_dir, "url_preview_ip_range_blacklist[0]: ", url_preview_ip_range_blacklist=["nope"])
    refused(cfg_dir, "url_preview_url_blacklist[0].host: not a URL part", url_preview_url_blacklist=[{"host": "x"}])
    refused(cfg_dir, "max_spider_size: must be a size", max_spider_size="ten megs")


@pytest.mark.parametrize("value,size", [(123, 123), ("10M", 10 * 1024 ** 2), ("50k", 50 * 1024), ("1G", 1024 ** 3),
                                        (" 2T ", 2 * 1024 ** 4), ("0", 0)])
def test_sizes(value, size):
    assert parse_size(value, "k") == size


@pytest.mark.parametrize("value", [-1, True, "1.5M", "10 MiB", "", None, [1]])
def test_bad_sizes(value):
    with pytest.raises(ConfigError, match="^k: must be a size"):
        parse_size(value, "k")
