-- Everything the lake knows of one token ($1): auth events where it is the
-- access token, the refresh token issued or the refresh token consumed
-- (`role` says which), and the FHIR calls made with it, oldest first, the
-- first $8 of them; `total` counts them all. Bounds and tenants as in
-- evidence_events.sql: `ts` in [$2, $3), `date` in $4..=$5, every tenant
-- when $6 is true, else those in the list $7.
WITH hits AS (
    SELECT 'auth' AS stream, event_id, epoch_us(ts) AS ts_us, tenant, client_id,
           CAST(kind AS VARCHAR) AS kind, CAST(outcome AS VARCHAR) AS outcome, error,
           CASE WHEN token_id = $1 THEN 'token_id'
                WHEN refresh_token_id = $1 THEN 'refresh_token_id'
                ELSE 'parent_token_id' END AS role,
           token_id, refresh_token_id, parent_token_id, scopes_granted,
           epoch_us(expires_at) AS expires_at_us,
           CAST(NULL AS VARCHAR) AS method, CAST(NULL AS VARCHAR) AS path,
           CAST(NULL AS INTEGER) AS status, ip, user_agent
    FROM auth
    WHERE (token_id = $1 OR refresh_token_id = $1 OR parent_token_id = $1)
      AND ts >= CAST($2 AS TIMESTAMPTZ) AND ts < CAST($3 AS TIMESTAMPTZ)
      AND date >= CAST($4 AS DATE) AND date <= CAST($5 AS DATE)
      AND (CAST($6 AS BOOLEAN) OR list_contains(CAST($7 AS VARCHAR[]), tenant))
    UNION ALL
    SELECT 'access' AS stream, event_id, epoch_us(ts) AS ts_us, tenant, client_id,
           'call' AS kind, CAST(outcome AS VARCHAR) AS outcome, CAST(NULL AS VARCHAR) AS error,
           'token_id' AS role, token_id, CAST(NULL AS VARCHAR) AS refresh_token_id,
           CAST(NULL AS VARCHAR) AS parent_token_id, CAST(NULL AS VARCHAR[]) AS scopes_granted,
           epoch_us(expires_at) AS expires_at_us, method, path,
           CAST(status AS INTEGER) AS status, ip, user_agent
    FROM access
    WHERE token_id = $1
      AND ts >= CAST($2 AS TIMESTAMPTZ) AND ts < CAST($3 AS TIMESTAMPTZ)
      AND date >= CAST($4 AS DATE) AND date <= CAST($5 AS DATE)
      AND (CAST($6 AS BOOLEAN) OR list_contains(CAST($7 AS VARCHAR[]), tenant))
)
SELECT *, count(*) OVER () AS total
FROM hits
ORDER BY ts_us, stream, event_id
LIMIT CAST($8 AS BIGINT)
