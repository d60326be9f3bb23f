-- Every tenant and app (client_id) in the lake, in any window, so that a
-- misspelt `--tenant` or `--app` is told apart from one without events.
SELECT DISTINCT 'tenant' AS kind, tenant AS name FROM auth WHERE tenant IS NOT NULL
UNION
SELECT DISTINCT 'tenant', tenant FROM access WHERE tenant IS NOT NULL
UNION
SELECT DISTINCT 'app', client_id FROM auth WHERE client_id IS NOT NULL
UNION
SELECT DISTINCT 'app', client_id FROM access WHERE client_id IS NOT NULL
