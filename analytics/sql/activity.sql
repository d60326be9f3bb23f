-- Per tenant and app: calls and grants in the window (from the staged
-- window_calls, window_keys, window_patients and window_auth), the last call and grant
-- before the window's end (all history, for staleness: before the window
-- start $1 the lake is read only for apps' last events), whether offline
-- access was granted and whether the app ever refreshed in the window, and
-- whether its source records requested scopes at all (authorize events
-- with scopes). Filters $2 (tenant) and $3 (app) as in the staging queries.
WITH calls AS (
    SELECT tenant, client_id, sum(calls) AS calls,
           sum(calls) FILTER (WHERE outcome = 'denied') AS denied,
           max(last_ts) AS last_call
    FROM window_calls
    WHERE client_id IS NOT NULL
    GROUP BY ALL
), patients AS (
    SELECT k.tenant, k.client_id, count(DISTINCT p.patient) AS patients
    FROM window_patients p
    JOIN window_keys k ON p.k = k.k
    GROUP BY ALL
), earlier_calls AS (
    SELECT tenant, client_id, max(ts) AS last_call
    FROM access
    WHERE ts < CAST($1 AS TIMESTAMPTZ) AND client_id IS NOT NULL
      AND (CAST($2 AS VARCHAR) IS NULL OR tenant = CAST($2 AS VARCHAR)) AND (CAST($3 AS VARCHAR) IS NULL OR client_id = CAST($3 AS VARCHAR))
    GROUP BY ALL
), grants AS (
    SELECT tenant, client_id,
           sum(events) FILTER (WHERE kind IN ('token', 'refresh', 'client_credentials', 'token_exchange')
                               AND outcome = 'success') AS grants,
           max(last_ts) FILTER (WHERE kind IN ('token', 'refresh', 'client_credentials', 'token_exchange')
                                AND outcome = 'success') AS last_grant,
           sum(events) FILTER (WHERE kind = 'refresh' AND outcome = 'success') AS refreshes,
           bool_or(outcome = 'success' AND list_contains(scopes_granted, 'offline_access')) AS offline_granted,
           sum(events) FILTER (WHERE kind = 'authorize' AND scopes_requested IS NOT NULL) AS authorize_with_scopes
    FROM window_auth
    WHERE client_id IS NOT NULL
    GROUP BY ALL
), earlier_grants AS (
    SELECT tenant, client_id, max(ts) AS last_grant
    FROM auth
    WHERE ts < CAST($1 AS TIMESTAMPTZ) AND client_id IS NOT NULL
      AND kind IN ('token', 'refresh', 'client_credentials', 'token_exchange') AND outcome = 'success'
      AND (CAST($2 AS VARCHAR) IS NULL OR tenant = CAST($2 AS VARCHAR)) AND (CAST($3 AS VARCHAR) IS NULL OR client_id = CAST($3 AS VARCHAR))
    GROUP BY ALL
), apps AS (
    SELECT tenant, client_id FROM calls
    UNION SELECT tenant, client_id FROM earlier_calls
    UNION SELECT tenant, client_id FROM grants
    UNION SELECT tenant, client_id FROM earlier_grants
)
SELECT a.tenant, a.client_id,
       CAST(coalesce(c.calls, 0) AS BIGINT) AS calls, CAST(coalesce(c.denied, 0) AS BIGINT) AS denied,
       coalesce(p.patients, 0) AS patients,
       -- A call in the window is later than any before it.
       epoch_us(coalesce(c.last_call, ec.last_call)) AS last_call_us,
       CAST(coalesce(g.grants, 0) AS BIGINT) AS grants,
       epoch_us(coalesce(g.last_grant, eg.last_grant)) AS last_grant_us,
       CAST(coalesce(g.refreshes, 0) AS BIGINT) AS refreshes,
       coalesce(g.offline_granted, false) AS offline_granted,
       CAST(coalesce(g.authorize_with_scopes, 0) AS BIGINT) AS authorize_with_scopes
FROM apps a
LEFT JOIN calls c ON a.tenant = c.tenant AND a.client_id = c.client_id
LEFT JOIN patients p ON a.tenant = p.tenant AND a.client_id = p.client_id
LEFT JOIN earlier_calls ec ON a.tenant = ec.tenant AND a.client_id = ec.client_id
LEFT JOIN grants g ON a.tenant = g.tenant AND a.client_id = g.client_id
LEFT JOIN earlier_grants eg ON a.tenant = eg.tenant AND a.client_id = eg.client_id
