//! Log lines and tokens as the systems scopewatch watches write them.

/// A JWT with a `jti`, as an authorization server would issue it to
/// `sub` for `patient` (the signature is not checked by anyone here).
pub fn jwt(jti: &str, sub: &str, patient: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(&format!(
            r#"{{"jti":"{jti}","client_id":"cardio-insight","scope":"launch patient/Observation.rs","sub":"{sub}","patient":"{patient}","exp":1795000000}}"#
        )),
        "c2lnbmF0dXJlLW5vdC1jaGVja2Vk"
    )
}

/// A successful refresh in the canonical format, stamped now: `client`,
/// for `user` of tenant `north`, consumes refresh token `consumed` and is
/// issued `issued`, from `ip`. The same `consumed` twice is a replay.
pub fn refresh_line(client: &str, user: &str, consumed: &str, issued: &str, ip: &str) -> String {
    serde_json::json!({
        "stream": "auth", "ts": super::now_rfc3339(), "tenant": "north", "kind": "refresh",
        "outcome": "success", "client_id": client, "user": user,
        "grant_type": "refresh_token", "refresh_token": issued,
        "parent_refresh_token": consumed, "ip": ip,
    })
    .to_string()
}
