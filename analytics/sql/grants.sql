-- Scopes requested and granted per tenant, app and version, one row per
-- scope and kind, from the staged window_auth.
SELECT tenant, client_id, app_version, 'requested' AS what, scope,
       CAST(sum(events) AS BIGINT) AS events, epoch_us(min(first_ts)) AS first_us, epoch_us(max(last_ts)) AS last_us
FROM (SELECT *, unnest(scopes_requested) AS scope FROM window_auth
      WHERE kind = 'authorize' AND scopes_requested IS NOT NULL AND client_id IS NOT NULL)
GROUP BY tenant, client_id, app_version, scope
UNION ALL
SELECT tenant, client_id, app_version, 'granted' AS what, scope,
       CAST(sum(events) AS BIGINT) AS events, epoch_us(min(first_ts)) AS first_us, epoch_us(max(last_ts)) AS last_us
FROM (SELECT *, unnest(scopes_granted) AS scope FROM window_auth
      WHERE outcome = 'success' AND scopes_granted IS NOT NULL AND client_id IS NOT NULL
        AND kind IN ('token', 'refresh', 'client_credentials', 'token_exchange'))
GROUP BY tenant, client_id, app_version, scope
