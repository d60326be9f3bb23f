-- The permissions calls needed, per tenant, app, version and outcome, from
-- the staged window_calls.
SELECT tenant, client_id, app_version, required, outcome, context_guessed,
       CAST(sum(calls) AS BIGINT) AS calls
FROM window_calls
WHERE client_id IS NOT NULL AND required IS NOT NULL
GROUP BY ALL
