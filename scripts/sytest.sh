#!/usr/bin/env bash
# SyTest (matrix-org/sytest, Manual mode) against this checkout, with the parts of SyTest's own Synapse set-up
# that a plain configuration leaves out: its two application services, its SMTP server, its CAS URL and its
# reCAPTCHA siteverify URL.
#
#   scripts/sytest.sh [TEST_FILE_OR_DIR...]      e.g. scripts/sytest.sh tests/60app-services tests/11register.pl
#
# Environment: SYTEST_DIR (SyTest's checkout, default /tmp/sytest), OUT (results: summary.txt, failures.txt,
# results.tap; default /tmp/sytest-out), SYTEST_RUNNER (the shared runner, default
# /work/shared/sytest/run_sytest.sh, which patches SyTest so that its helper servers and appservice tokens are
# fixed), and any other variable that runner reads (EXTRA_ARGS, ROOM_VERSION, ...).
#
# The server: this checkout installed into .venv, a fresh `hexagone init` in a temporary directory, one HTTPS
# listener on 127.0.0.1:48448 (certificate signed by SyTest's CA), stopped (by its PID) when SyTest is done.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
SYTEST_DIR=${SYTEST_DIR:-/tmp/sytest}
RUNNER=${SYTEST_RUNNER:-/work/shared/sytest/run_sytest.sh}
HOST=127.0.0.1
HS_PORT=48448      # the homeserver
TEST_PORT=48440    # SyTest's HTTPS test server: appservices under /appservs/N, CAS under /cas, reCAPTCHA
SMTP_PORT=48441    # SyTest's SMTP server
export SYTEST_DIR SYTEST_TEST_SERVER_PORT=$TEST_PORT SYTEST_SMTP_PORT=$SMTP_PORT SYTEST_FIXED_AS_TOKENS=1

for need in "$SYTEST_DIR/run-tests.pl" "$SYTEST_DIR/keys/ca.crt" "$SYTEST_DIR/keys/ca.key" "$RUNNER"; do
  [ -e "$need" ] || { echo "missing $need (see /work/shared/sytest/README.md)" >&2; exit 2; }
done
[ -x .venv/bin/python ] || python3 -m venv .venv || exit 2
.venv/bin/pip install -q -e . || exit 2

WORK=$(mktemp -d /tmp/sytest-hexagone.XXXXXX)
mkdir -p "$WORK/tls" "$WORK/appservices"

# The listener's certificate, for IP:127.0.0.1, signed by SyTest's CA (SyTest checks it).
openssl req -new -newkey rsa:2048 -nodes -subj "/CN=$HOST" -keyout "$WORK/tls/server.key" \
  -out "$WORK/tls/server.csr" 2>/dev/null || exit 2
printf 'subjectAltName=IP:%s\n' "$HOST" >"$WORK/tls/san.ext"
openssl x509 -req -days 7 -set_serial "0x$(openssl rand -hex 8)" -in "$WORK/tls/server.csr" \
  -CA "$SYTEST_DIR/keys/ca.crt" -CAkey "$SYTEST_DIR/keys/ca.key" -extfile "$WORK/tls/san.ext" \
  -out "$WORK/tls/server.crt" 2>/dev/null || exit 2

# Outbound HTTPS other than federation (the appservice calls to SyTest's test server) trusts the system's CAs
# through OpenSSL's default paths, so SyTest's CA joins them through SSL_CERT_FILE, which Synapse honours too.
SYSTEM_CAS=$(.venv/bin/python -c 'import ssl; print(ssl.get_default_verify_paths().openssl_cafile or "")')
{ [ -f "$SYSTEM_CAS" ] && cat "$SYSTEM_CAS"; cat "$SYTEST_DIR/keys/ca.crt"; } >"$WORK/tls/trusted.pem"

.venv/bin/hexagone init --server-name "$HOST:$HS_PORT" --dir "$WORK/hs" --port "$HS_PORT" >"$WORK/init.log" 2>&1 \
  || { cat "$WORK/init.log" >&2; exit 2; }

.venv/bin/python - "$WORK" "$SYTEST_DIR" "$HOST" "$HS_PORT" "$TEST_PORT" "$SMTP_PORT" <<'EOF' || exit 2
import sys

import yaml

work, sytest, host, hs_port, test_port, smtp_port = sys.argv[1:]
server_name = f"{host}:{hs_port}"
test_server = f"https://{host}:{test_port}"
config_path = f"{work}/hs/homeserver.yaml"
config = yaml.safe_load(open(config_path))

# SyTest's appservices, as tests/02as-info.pl and tests/05homeserver.pl describe them.
registrations = []
for n, own_users, own_aliases in ((1, ["@astest-.*"], ["#astest-.*"]), (2, [], [])):
    registration = {
        "id": f"AS-{n}", "url": f"{test_server}/appservs/{n}",
        "as_token": f"sytest-as2hs-{n}", "hs_token": f"sytest-hs2as-{n}", "sender_localpart": f"as-user-{n}",
        "namespaces": {
            "users": [{"regex": "@_.*:" + server_name, "exclusive": False}]
                     + [{"regex": r, "exclusive": True} for r in own_users],
            "aliases": [{"regex": r, "exclusive": True} for r in own_aliases],
            "rooms": [],
        },
        "protocols": ["ymca"],
    }
    path = f"{work}/appservices/AS-{n}.yaml"
    with open(path, "w") as f:
        yaml.safe_dump(registration, f, sort_keys=False)
    registrations.append(path)

limit = {"per_second": 10000, "burst_count": 100000}
config.pop("federation_domain_whitelist", None)  # SyTest's own federation servers must get in
config.update({
    "public_baseurl": f"https://{server_name}/",
    "listeners": [{
        "port": int(hs_port), "bind_addresses": [host], "type": "http", "tls": True, "x_forwarded": False,
        "resources": [{"names": ["client", "federation", "keys", "media", "openid"], "compress": False}],
    }],
    "tls_certificate_path": f"{work}/tls/server.crt", "tls_private_key_path": f"{work}/tls/server.key",
    # Federation with SyTest's servers: their certificates come from SyTest's CA, on loopback addresses.
    "federation_custom_ca_list": [f"{sytest}/keys/ca.crt"], "federation_verify_certificates": False,
    "ip_range_blacklist": [], "federation_ip_range_blacklist": [], "ip_range_whitelist": ["127.0.0.0/8"],
    "trusted_key_servers": [], "allow_public_rooms_over_federation": True,
    # What SyTest's tests assume of the server.
    "registration_shared_secret": "reg_secret", "enable_registration": True,
    "enable_registration_without_verification": True, "allow_guest_access": True,
    "allow_public_rooms_without_auth": True, "require_membership_for_aliases": False,
    "room_list_publication_rules": [{"action": "allow"}], "presence": {"enabled": True},
    "rc_message": limit, "rc_registration": limit, "rc_room_creation": limit, "rc_joins_per_room": limit,
    "rc_login": {"address": limit, "account": limit, "failed_attempts": limit},
    "rc_joins": {"local": limit, "remote": limit},
    "rc_invites": {"per_room": limit, "per_user": limit, "per_issuer": limit},
    "rc_presence": {"per_user": {"per_second": 1000, "burst_count": 1000}},
    "rc_federation": {"sleep_limit": 100, "window_size": 1000},
    "rc_third_party_invite": limit,
    # Wired here and not in the shared script: appservices, e-mail (plain SMTP, as SyTest's server speaks), CAS,
    # and SyTest's identity server (on a port of its range) trusted for third-party invites and 3PID binds.
    "app_service_config_files": registrations,
    "email": {"smtp_host": host, "smtp_port": int(smtp_port), "notif_from": "Hexagone <hexagone@localhost>",
              "enable_tls": False, "require_transport_security": False},
    "cas_config": {"enabled": True, "server_url": f"{test_server}/cas"},
    "trusted_third_party_id_servers": ["127.0.0.1", "localhost"],
    # URL previews of SyTest's test server (tests/51media/20urlpreview.pl), on loopback.
    "url_preview_enabled": True, "url_preview_ip_range_whitelist": ["127.0.0.0/8"],
    # SyTest's reCAPTCHA siteverify stand-in (tests/11register.pl); as in SyTest's own Synapse set-up the
    # stage is checkable but not required (enable_registration_captcha unset).
    "recaptcha_siteverify_api": f"{test_server}/recaptcha/api/siteverify",
    "recaptcha_public_key": "sytest_recaptcha_public_key", "recaptcha_private_key": "sytest_recaptcha_private_key",
})
with open(config_path, "w") as f:
    yaml.safe_dump(config, f, sort_keys=False)
EOF

SSL_CERT_FILE="$WORK/tls/trusted.pem" .venv/bin/hexagone run --config "$WORK/hs/homeserver.yaml" \
  >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null' EXIT
up=0
for _ in $(seq 1 150); do
  kill -0 "$SERVER_PID" 2>/dev/null || break
  if curl -ksf "https://$HOST:$HS_PORT/_matrix/client/versions" >/dev/null; then up=1; break; fi
  sleep 0.2
done
[ "$up" = 1 ] || { echo "the server did not start; its log:" >&2; tail -n 40 "$WORK/server.log" >&2; exit 2; }

"$RUNNER" "https://$HOST:$HS_PORT" "$HOST:$HS_PORT" "$@"
rc=$?
echo "server log: $WORK/server.log"
exit $rc
