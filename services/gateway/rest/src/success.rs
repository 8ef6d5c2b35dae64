//! `{"success": true}`.

/// `{"success": true}`: the answer of an action that has nothing else to say.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct Success {
    /// Always `true`.
    #[schemars(extend("const" = true))]
    success: bool,
}

/// The one [`Success`].
pub const SUCCESS: Success = Success { success: true };
