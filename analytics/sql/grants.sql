-- Scopes requested and granted per tenant, app and version in [$1, $2),
-- optionally one tenant ($3) and one app ($4). One row per scope and kind.
-- Scope lists repeat on every event of an app, so events are grouped by
-- their list before the lists are unnested.
WITH events AS (
    SELECT tenant, client_id, app_version, kind, outcome, ts,
           scopes_requested, scopes_granted
    FROM auth
    WHERE ts >= CAST($1 AS TIMESTAMPTZ) AND ts < CAST($2 AS TIMESTAMPTZ)
      AND (CAST($3 AS VARCHAR) IS NULL OR tenant = CAST($3 AS VARCHAR))
      AND (CAST($4 AS VARCHAR) IS NULL OR client_id = CAST($4 AS VARCHAR))
      AND client_id IS NOT NULL
), requested AS (
    SELECT tenant, client_id, app_version, scopes_requested AS scopes,
           count(*) AS events, min(ts) AS first_ts, max(ts) AS last_ts
    FROM events
    WHERE kind = 'authorize' AND scopes_requested IS NOT NULL
    GROUP BY ALL
), granted AS (
    SELECT tenant, client_id, app_version, scopes_granted AS scopes,
           count(*) AS events, min(ts) AS first_ts, max(ts) AS last_ts
    FROM events
    WHERE outcome = 'success' AND scopes_granted IS NOT NULL
      AND kind IN ('token', 'refresh', 'client_credentials', 'token_exchange')
    GROUP BY ALL
)
SELECT tenant, client_id, app_version, 'requested' AS what, scope,
       sum(events) AS events, epoch_us(min(first_ts)) AS first_us, epoch_us(max(last_ts)) AS last_us
FROM (SELECT *, unnest(scopes) AS scope FROM requested)
GROUP BY tenant, client_id, app_version, scope
UNION ALL
SELECT tenant, client_id, app_version, 'granted' AS what, scope,
       sum(events) AS events, epoch_us(min(first_ts)) AS first_us, epoch_us(max(last_ts)) AS last_us
FROM (SELECT *, unnest(scopes) AS scope FROM granted)
GROUP BY tenant, client_id, app_version, scope
