-- Stage 2: a small integer key per (tenant, app, required permission) that
-- allowed calls of the staged window_calls carry, so that the distinct
-- patients (stage 3) are grouped by one integer, not three strings: that
-- halves the cost of the largest aggregation of a report.
CREATE OR REPLACE TEMP TABLE window_keys AS
SELECT CAST(row_number() OVER () AS INTEGER) AS k, tenant, client_id, required
FROM (SELECT DISTINCT tenant, client_id, required FROM window_calls
      WHERE outcome = 'allowed' AND client_id IS NOT NULL)
