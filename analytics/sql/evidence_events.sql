-- The events whose `event_id` is in the list $1, from both streams, as an
-- analyst reads them (already pseudonymised in the lake). Bounds: `ts` in
-- [$2, $3) and the `date` partitions $4..=$5 (so DuckDB reads only those
-- days; the caller passes wide bounds when it knows no window); tenants:
-- every one when $6 is true, else only those in the list $7.
WITH ids AS (
    SELECT DISTINCT unnest(CAST($1 AS VARCHAR[])) AS event_id
)
SELECT 'auth' AS stream, event_id, epoch_us(ts) AS ts_us, tenant, CAST(env AS VARCHAR) AS env,
       client_id, app_version, "user", patient, CAST(kind AS VARCHAR) AS kind,
       CAST(outcome AS VARCHAR) AS outcome, error, grant_type, scopes_requested, scopes_granted,
       token_id, refresh_token_id, parent_token_id, epoch_us(expires_at) AS expires_at_us,
       CAST(NULL AS VARCHAR) AS method, CAST(NULL AS VARCHAR) AS path,
       CAST(NULL AS VARCHAR) AS interaction, CAST(NULL AS VARCHAR) AS resource_type,
       CAST(NULL AS VARCHAR) AS required, CAST(NULL AS INTEGER) AS status,
       ip, user_agent, source
FROM auth
WHERE event_id IN (SELECT event_id FROM ids)
  AND ts >= CAST($2 AS TIMESTAMPTZ) AND ts < CAST($3 AS TIMESTAMPTZ)
  AND date >= CAST($4 AS DATE) AND date <= CAST($5 AS DATE)
  AND (CAST($6 AS BOOLEAN) OR list_contains(CAST($7 AS VARCHAR[]), tenant))
UNION ALL
SELECT 'access' AS stream, event_id, epoch_us(ts) AS ts_us, tenant, CAST(env AS VARCHAR) AS env,
       client_id, app_version, "user", patient, CAST(NULL AS VARCHAR) AS kind,
       CAST(outcome AS VARCHAR) AS outcome, CAST(NULL AS VARCHAR) AS error,
       CAST(NULL AS VARCHAR) AS grant_type, CAST(NULL AS VARCHAR[]) AS scopes_requested,
       CAST(NULL AS VARCHAR[]) AS scopes_granted, token_id,
       CAST(NULL AS VARCHAR) AS refresh_token_id, CAST(NULL AS VARCHAR) AS parent_token_id,
       epoch_us(expires_at) AS expires_at_us, method, path,
       CAST(interaction AS VARCHAR) AS interaction, resource_type, required,
       CAST(status AS INTEGER) AS status, ip, user_agent, source
FROM access
WHERE event_id IN (SELECT event_id FROM ids)
  AND ts >= CAST($2 AS TIMESTAMPTZ) AND ts < CAST($3 AS TIMESTAMPTZ)
  AND date >= CAST($4 AS DATE) AND date <= CAST($5 AS DATE)
  AND (CAST($6 AS BOOLEAN) OR list_contains(CAST($7 AS VARCHAR[]), tenant))
ORDER BY ts_us, stream, event_id
