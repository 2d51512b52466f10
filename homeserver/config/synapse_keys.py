"""Synapse's top-level configuration keys: any of them not in :data:`homeserver.config.table.KEYS` is
reported at start as not implemented yet (one warning, never a refusal).
"""

# Top-level keys from Synapse's configuration documentation
# (docs/usage/configuration/config_documentation.md), plus a few legacy names
# Synapse still reads. Used only to word the warning for keys we ignore.
SYNAPSE_TOP_LEVEL_KEYS: frozenset[str] = frozenset(
    """
    modules server_name pid_file daemonize print_pidfile user_agent_suffix
    use_frozen_dicts web_client_location public_baseurl serve_server_wellknown
    extra_well_known_client_content soft_file_limit presence
    require_auth_for_profile_requests
    limit_profile_requests_to_users_who_share_rooms include_profile_data_on_invite
    allow_public_rooms_without_auth allow_public_rooms_over_federation
    default_room_version gc_thresholds gc_min_interval
    block_non_admin_invites enable_search ip_range_blacklist ip_range_whitelist
    listeners manhole manhole_settings http_proxy https_proxy no_proxy_hosts
    matrix_authentication_service dummy_events_threshold delete_stale_devices_after
    email max_event_delay_duration user_types admin_contact hs_disabled
    hs_disabled_message limit_usage_by_mau max_mau_value mau_trial_days
    mau_appservice_trial_days mau_limit_alerting mau_stats_only
    mau_limit_reserved_threepids server_context limit_remote_rooms
    require_membership_for_aliases allow_per_room_profiles max_avatar_size
    allowed_avatar_mimetypes redaction_retention_period
    forgotten_room_retention_period user_ips_max_age
    request_token_inhibit_3pid_errors next_link_domain_whitelist templates
    retention tls_certificate_path tls_private_key_path
    federation_verify_certificates federation_client_minimum_tls_version
    federation_certificate_verification_whitelist federation_custom_ca_list
    use_insecure_ssl_client_just_for_testing_do_not_use
    federation_domain_whitelist federation_whitelist_endpoint_enabled
    federation_metrics_domains allow_profile_lookup_over_federation
    allow_device_name_lookup_over_federation federation event_cache_size caches
    database databases log_config rc_message rc_registration
    rc_registration_token_validity rc_login rc_admin_redaction rc_joins
    rc_joins_per_room rc_3pid_validation rc_invites rc_third_party_invite
    rc_media_create rc_federation rc_presence rc_delayed_event_mgmt rc_reports
    rc_room_creation rc_user_directory
    federation_rr_transactions_per_room_per_second enable_authenticated_media
    enable_media_repo enable_local_media_storage media_store_path
    max_pending_media_uploads unused_expiration_time media_storage_providers
    max_upload_size media_upload_limits max_image_pixels
    remote_media_download_burst_count remote_media_download_per_second
    prevent_media_downloads_from dynamic_thumbnails thumbnail_sizes
    media_retention url_preview_enabled url_preview_ip_range_blacklist
    url_preview_ip_range_whitelist url_preview_url_blacklist max_spider_size
    url_preview_accept_language oembed recaptcha_public_key
    recaptcha_public_key_path recaptcha_private_key recaptcha_private_key_path
    enable_registration_captcha recaptcha_siteverify_api turn_uris
    turn_shared_secret turn_shared_secret_path turn_username turn_password
    turn_user_lifetime turn_allow_guests matrix_rtc enable_registration
    enable_registration_without_verification registrations_require_3pid
    disable_msisdn_registration allowed_local_3pids enable_3pid_lookup
    registration_requires_token registration_shared_secret
    registration_shared_secret_path bcrypt_rounds allow_guest_access trusted_third_party_id_servers
    default_identity_server account_threepid_delegates enable_set_displayname
    enable_set_avatar_url enable_3pid_changes auto_join_rooms
    autocreate_auto_join_rooms autocreate_auto_join_rooms_federated
    autocreate_auto_join_room_preset auto_join_mxid_localpart
    auto_join_rooms_for_guests inhibit_user_in_use_error
    allow_underscore_prefixed_registration session_lifetime
    refreshable_access_token_lifetime refresh_token_lifetime
    nonrefreshable_access_token_lifetime ui_auth login_via_existing_session
    enable_metrics sentry metrics_flags report_stats report_stats_endpoint
    room_prejoin_state track_puppeted_user_ips app_service_config_files
    track_appservice_user_ips use_appservice_legacy_authorization
    macaroon_secret_key macaroon_secret_key_path form_secret form_secret_path
    signing_key_path old_signing_keys key_refresh_interval trusted_key_servers
    suppress_key_server_warning key_server_signing_keys_path saml2_config
    oidc_providers cas_config sso jwt_config password_config push
    encryption_enabled_by_default_for_room_type user_directory user_consent stats
    server_notices enable_room_list_search alias_creation_rules
    room_list_publication_rules default_power_level_content_override
    forget_rooms_on_leave exclude_rooms_from_sync exclude_rooms_from_presence
    opentracing worker_replication_secret worker_replication_secret_path
    start_pushers pusher_instances send_federation federation_sender_instances
    instance_map stream_writers outbound_federation_restricted_to
    run_background_tasks_on update_user_directory_from_worker
    notify_appservices_from_worker media_instance_running_background_jobs redis
    worker_app worker_name worker_listeners worker_manhole worker_daemonize
    worker_pid_file worker_log_config background_updates auto_accept_invites
    experimental_features
    use_presence perspectives federation_ip_range_blacklist
    url_preview_ip_range_blacklist limit_profile_requests_to_known_users
    no_tls tls_fingerprints acme enable_group_creation group_creation_prefix
    uploads_path media_storage_providers public_baseurl web_client
    """.split()
)
