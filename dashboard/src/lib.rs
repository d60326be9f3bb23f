//! Dashboard: the axum web UI and JSON API where compliance recertifies,
//! security works alerts and incidents, and product owners prune scopes.
//! Login is required, everything from a log is escaped, and a user limited
//! to some tenants sees nothing of the others.
pub fn x() {}
