//! (being written)

use axum::Router;

use crate::AppState;

/// The routes of this module, merged by [`crate::pages::routes`].
pub fn routes() -> Router<AppState> {
    Router::new()
}
