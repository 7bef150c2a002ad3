//! Black-box tests of `kubeward detect`, `kubeward rbac`, `kubeward alerts`, `kubeward git` and `kubeward scan`: the binary is run as a user would run it.
//!
//! One test target with themed modules (as ripgrep does), so the binary is linked once.

#[path = "cli/util.rs"]
mod util;

#[path = "cli/alerts.rs"]
mod alerts;
#[path = "cli/corpus.rs"]
mod corpus;
#[path = "cli/envelopes.rs"]
mod envelopes;
#[path = "cli/git.rs"]
mod git;
#[path = "cli/inputs.rs"]
mod inputs;
#[path = "cli/live.rs"]
mod live;
#[path = "cli/output.rs"]
mod output;
#[path = "cli/rbac.rs"]
mod rbac;
#[path = "cli/scan.rs"]
mod scan;
#[path = "cli/serve.rs"]
mod serve;
#[path = "cli/serve_tls.rs"]
mod serve_tls;
#[path = "cli/state.rs"]
mod state;
#[path = "cli/suppressions.rs"]
mod suppressions;
#[path = "cli/verdicts.rs"]
mod verdicts;
