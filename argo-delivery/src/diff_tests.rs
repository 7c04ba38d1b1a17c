//! The pure diff of phase 15, without servers. Its API-managed state is CI's Argo CD token
//! (ADR 0008, decision 4); its Kubernetes objects are planned by server-side dry run and tested
//! against kube-apiserver in `tests/`. Plans are snapshots (`src/snapshots/`). The leftovers of
//! the bash phase 15 and their identity rules are in `leftover_tests`.

use common::argocd::ProjectToken;
use common::config::PlatformConfig;

use crate::leftovers::LiveLeftovers;
use crate::reconcile::{Observed, PIPELINE_TOKEN_DAYS, StoredToken, diff};
use crate::settings::Settings;

const NOW: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

pub(crate) fn settings() -> Settings {
    Settings::load(&PlatformConfig::example(&[]).unwrap()).unwrap()
}

fn token(id: &str, exp: i64) -> ProjectToken {
    ProjectToken {
        iat: exp - PIPELINE_TOKEN_DAYS * DAY,
        exp: Some(exp),
        id: Some(id.into()),
    }
}

fn stored(id: &str) -> StoredToken {
    StoredToken {
        placeholder: false,
        id: Some(id.into()),
        iat: None,
        exp: None,
    }
}

/// The token phase 15 minted 10 days ago, in Vault and listed by Argo CD.
fn converged() -> Observed {
    Observed {
        stored: Some(stored("cicd-1")),
        listed: vec![token("cicd-1", NOW + 20 * DAY)],
        now: NOW,
        leftovers: LiveLeftovers::default(),
        generator: crate::generator_token::converged_for_tests(NOW / DAY),
    }
}

#[test]
fn noop_a_valid_stored_token_plans_nothing() {
    let plan = diff(&settings(), &converged()).unwrap();
    assert!(plan.is_empty(), "{plan}");
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn create_a_token_when_vault_holds_only_the_placeholder() {
    let o = Observed {
        stored: Some(StoredToken {
            placeholder: true,
            ..StoredToken::default()
        }),
        listed: Vec::new(),
        now: NOW,
        leftovers: LiveLeftovers::default(),
        generator: crate::generator_token::converged_for_tests(NOW / DAY),
    };
    let plan = diff(&settings(), &o).unwrap();
    assert_eq!(plan.summary().create, 1, "{plan}");
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn renew_a_token_close_to_expiry_and_revoke_only_it() {
    let mut o = converged();
    o.listed = vec![token("cicd-1", NOW + 6 * DAY)];
    let plan = diff(&settings(), &o).unwrap();
    assert_eq!(plan.changes.len(), 1, "{plan}");
    match &plan.changes[0].op {
        crate::reconcile::Op::MintPipelineToken { replaces } => {
            assert_eq!(
                replaces.as_ref().and_then(|t| t.id.as_deref()),
                Some("cicd-1")
            );
        }
        other => panic!("a token change, not {other:?}: {plan}"),
    }
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn never_touch_tokens_the_phase_did_not_mint() {
    // Someone else's tokens of the same role, one of them about to expire: not ours to renew
    // or revoke while our own token is valid.
    let mut o = converged();
    o.listed.push(token("someone-elses", NOW + DAY));
    o.listed.push(ProjectToken {
        iat: NOW - DAY,
        exp: None,
        id: None,
    });
    let plan = diff(&settings(), &o).unwrap();
    assert!(plan.is_empty(), "{plan}");
    // Ours revoked by hand: a new one, and nothing of the others is revoked.
    o.listed.remove(0);
    let plan = diff(&settings(), &o).unwrap();
    match &plan.changes[..] {
        [change] => match &change.op {
            crate::reconcile::Op::MintPipelineToken { replaces } => assert!(replaces.is_none()),
            _ => panic!("{plan}"),
        },
        _ => panic!("one change: {plan}"),
    }
    insta::assert_snapshot!(plan.to_string());
}
