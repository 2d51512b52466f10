"""The Olvid section of the bridge's configuration: TLS options handed to the client library, message ids."""

from __future__ import annotations

import pytest

olvid = pytest.importorskip("olvid", reason="the olvid extra is not installed: pip install '.[olvid]'")

from bridges.config import BridgeConfigError  # noqa: E402
from bridges.olvid.bridge import message_id, tls_configuration  # noqa: E402


def test_tls_options_become_the_client_library_configuration(tmp_path):
    assert tls_configuration({}) is None  # the library's OLVID_*_PATH variables, or plain gRPC
    simple = tls_configuration({"server_certificate": str(tmp_path / "daemon.pem")})
    assert isinstance(simple, olvid.OlvidClient.GrpcSimpleTlsConfiguration)
    mutual = tls_configuration({"root_certificate": "ca.pem", "certificate_chain": "c.pem", "private_key": "k.pem"})
    assert isinstance(mutual, olvid.OlvidClient.GrpcMutualAuthTlsConfiguration)
    with pytest.raises(BridgeConfigError, match="olvid.tls"):
        tls_configuration({"private_key": "k.pem"})


@pytest.mark.parametrize("text", ["I1", "O42"])
def test_message_ids_round_trip_through_their_text(text):
    assert str(message_id(text)) == text
