//! IAM from the types: a function's AWS actions are the union of what its dependencies hold.
//!
//! Each port an AWS adapter serves declares the actions its calls need ([`crate::ports`]);
//! the database pool and the deployment's secrets declare theirs where they are read. Each
//! function's dependency struct implements [`Permissions`] by listing the ports of its type
//! parameters' bounds and the adapters it holds, next to its definition, so a use case that
//! needs another port needs another bound, and with it another grant. `template.yaml` grants
//! each function exactly [`crate::wiring::Function::actions`], which the template test checks
//! in both directions; the local stack signs every function's calls with an identity holding
//! the template's policy, so a missing grant fails the tests as it would fail on AWS.

use std::collections::BTreeSet;

use crate::ports::Actions;

/// What a function's dependencies call on AWS.
pub trait Permissions {
    /// The actions of each port or adapter held, one slice each.
    fn held() -> Vec<Actions>;

    /// The distinct actions, sorted.
    fn actions() -> BTreeSet<&'static str> {
        Self::held().into_iter().flatten().copied().collect()
    }
}
