-- Stage 3: the distinct patients each app touched through allowed calls
-- in [$1, $2) per required permission (filters as window_calls.sql), keyed
-- by window_keys. Distinct counts cannot be summed from a rollup, so this
-- keeps the (app permission, patient) pairs, far fewer than the calls.
CREATE OR REPLACE TEMP TABLE window_patients AS
SELECT k.k, a.patient
FROM access a
JOIN window_keys k
  ON a.tenant = k.tenant AND a.client_id = k.client_id AND a.required IS NOT DISTINCT FROM k.required
WHERE a.ts >= CAST($1 AS TIMESTAMPTZ) AND a.ts < CAST($2 AS TIMESTAMPTZ)
  AND (CAST($3 AS VARCHAR) IS NULL OR a.tenant = CAST($3 AS VARCHAR))
  AND (CAST($4 AS VARCHAR) IS NULL OR a.client_id = CAST($4 AS VARCHAR))
  AND a.outcome = 'allowed' AND a.patient IS NOT NULL
GROUP BY ALL
