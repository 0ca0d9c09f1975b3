//! How a server spells a [`Recovery`] on its pages.

use std::{fmt, sync::Arc};

use tenantgate::Recovery;

/// Turns a recovery into the text a page shows. The default says the step
/// in words ([`Recovery`]'s `Display`), naming no program; a binary that
/// ships a CLI passes the command that runs the step where it is shown.
///
/// ```
/// use tenantgate::{Recovery, TenantName};
/// use tenantgate_http::RecoveryText;
///
/// let heal = Recovery::MigrateTenant { tenant: TenantName::parse("acme").unwrap() };
/// assert_eq!(RecoveryText::default().render(&heal), "apply the migrations tenant acme lacks");
/// let cli = RecoveryText::new(|r| match r {
///     Recovery::MigrateTenant { tenant } => format!("mytool migrate {tenant}"),
///     other => other.to_string(),
/// });
/// assert_eq!(cli.render(&heal), "mytool migrate acme");
/// ```
#[derive(Clone)]
pub struct RecoveryText(Arc<dyn Fn(&Recovery) -> String + Send + Sync>);

impl RecoveryText {
    /// Spells recoveries with `render`.
    pub fn new(render: impl Fn(&Recovery) -> String + Send + Sync + 'static) -> Self {
        Self(Arc::new(render))
    }

    /// The text for `recovery`.
    pub fn render(&self, recovery: &Recovery) -> String {
        (self.0)(recovery)
    }
}

impl Default for RecoveryText {
    fn default() -> Self {
        Self::new(Recovery::to_string)
    }
}

impl fmt::Debug for RecoveryText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryText(..)")
    }
}
