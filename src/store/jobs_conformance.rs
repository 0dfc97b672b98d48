//! The conformance suite every [`Jobs`] implementation must pass: rounds
//! (queue what is due, an open round goes on), claims (most overdue first,
//! one holder at a time, taken over when the lease runs out, fencing tokens
//! strictly increasing), and every write refused once the claim was taken
//! over.
//!
//! [`suite`] runs on an empty table; [`after_reopen`] on the same table
//! opened again (a new connection, a new process, a read-only reader).

use super::jobs::*;
use crate::error::ErrorKind;
use serde_json::json;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);
/// Short enough to run out in a test.
const SHORT: Duration = Duration::from_millis(200);

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn spec(name: &str, weight: u32) -> AccountSpec {
    AccountSpec {
        name: name.into(),
        weight,
    }
}

async fn row(jobs: &dyn Jobs, name: &str) -> JobRow {
    jobs.jobs()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("a row for {name}"))
}

pub(crate) async fn suite(jobs: &dyn Jobs) {
    let all = names(&["a", "b", "c"]);
    jobs.upsert_accounts(&[spec("a", 1), spec("b", 2), spec("c", 1)])
        .await
        .unwrap();
    // Upsert again: the weight changes, nothing else.
    jobs.upsert_accounts(&[spec("b", 3)]).await.unwrap();
    let rows = jobs.jobs().await.unwrap();
    assert_eq!(
        rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    assert_eq!(rows[1].weight, 3);
    assert!(rows
        .iter()
        .all(|r| r.progress.stage == JobStage::Idle && r.holder.is_none()));

    // Nothing is claimed before a round queues it.
    assert!(jobs.claim_next(&all, "w1", LONG).await.unwrap().is_none());
    let policy = RoundPolicy {
        accounts: all.clone(),
        ..Default::default()
    };
    let r1 = jobs.start_round(&policy).await.unwrap();
    assert!(!r1.resumed);
    assert_eq!(r1.queued, all);

    claims_and_fencing(jobs, &all).await;
    answers(jobs, r1.number).await;
    rounds(jobs, &all, r1.number).await;
    // A new round forgot the earlier rounds' answers.
    assert_eq!(jobs.kept_answers(r1.number).await.unwrap(), (0, 0));
    let last = row(jobs, "a").await.round;
    assert!(jobs
        .kept_answer(last, &answer(1, 0, "x").key)
        .await
        .unwrap()
        .is_none());
    jobs.keep_answers(last, &[answer(9, 2, "kept")])
        .await
        .unwrap();
    if jobs.held_alone() {
        broken_claims(jobs).await;
    }
}

/// A killed process's claims, freed by the one process that holds the
/// table alone: claimable at once, with greater tokens, and the dead
/// claim's writes refused.
async fn broken_claims(jobs: &dyn Jobs) {
    let a = names(&["a"]);
    let dead = jobs.claim_next(&a, "dead", LONG).await.unwrap().unwrap();
    assert!(jobs.claim_next(&a, "w1", LONG).await.unwrap().is_none());
    assert_eq!(jobs.break_claims().await.unwrap(), 1);
    let alive = jobs.claim_next(&a, "w1", LONG).await.unwrap().unwrap();
    assert!(alive.token > dead.token);
    let e = jobs
        .update(&dead, &JobProgress::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::ClaimLost);
    jobs.release(&alive).await.unwrap();
}

async fn claims_and_fencing(jobs: &dyn Jobs, all: &[String]) {
    // Only the accounts asked for are claimed; one holder at a time.
    let mut c1 = jobs
        .claim_next(&names(&["b"]), "w1", LONG)
        .await
        .unwrap()
        .expect("b is queued");
    assert_eq!((c1.account.as_str(), c1.worker.as_str()), ("b", "w1"));
    assert_eq!(c1.row.progress.stage, JobStage::Queued);
    assert!(jobs.claim("b", "w2", LONG).await.unwrap().is_none());
    let held = row(jobs, "b").await.holder.expect("held");
    assert_eq!((held.worker.as_str(), held.token), ("w1", c1.token));

    // The holder records its progress and renews.
    let mut p = JobProgress {
        stage: JobStage::Check,
        position: 7,
        started: Some(1),
        last_error: Some("one listing failed".into()),
        ..Default::default()
    };
    p.counts.objects = 10;
    p.counts.checked = 7;
    p.counts.unhealthy = 2;
    p.timings.insert("manifest".into(), 1.5);
    jobs.update(&c1, &p).await.unwrap();
    assert_eq!(row(jobs, "b").await.progress, p);
    jobs.renew(&mut c1, SHORT).await.unwrap();
    p.position = 8;
    let before = c1.expires_ms;
    jobs.renew_and_update(&mut c1, SHORT, &p).await.unwrap();
    assert!(c1.expires_ms >= before);
    assert_eq!(row(jobs, "b").await.progress, p);
    assert_eq!(
        row(jobs, "b").await.holder.unwrap().expires_ms,
        c1.expires_ms
    );

    // Its lease runs out: another worker takes the account over, with a
    // greater token, and sees where it stood.
    tokio::time::sleep(SHORT * 2).await;
    let c2 = jobs
        .claim("b", "w2", LONG)
        .await
        .unwrap()
        .expect("the lease ran out");
    assert!(c2.token > c1.token, "fencing tokens grow");
    assert_eq!(c2.row.progress, p, "the taker resumes from the progress");

    // The first holder's writes are all refused, distinctly.
    let mut stale = p.clone();
    stale.position = 1;
    for e in [
        jobs.update(&c1, &stale).await.err(),
        jobs.renew(&mut c1.clone(), LONG).await.err(),
        jobs.renew_and_update(&mut c1.clone(), LONG, &stale)
            .await
            .err(),
        jobs.release(&c1).await.err(),
        jobs.finish(&c1, &stale, &Outcome::Failed { error: "x".into() })
            .await
            .err(),
    ] {
        let e = e.expect("a write with a taken-over claim is refused");
        assert_eq!(e.kind, ErrorKind::ClaimLost, "{}", e.message);
    }
    assert_eq!(row(jobs, "b").await.progress, p, "nothing was overwritten");

    // Released: anyone may claim it again, with a greater token still.
    jobs.release(&c2).await.unwrap();
    assert!(row(jobs, "b").await.holder.is_none());
    let c3 = jobs.claim("b", "w1", LONG).await.unwrap().expect("free");
    assert!(c3.token > c2.token);
    assert!(
        jobs.release(&c2).await.is_err(),
        "an old claim stays refused"
    );

    // Most overdue first: never completed before completed; among those
    // completed, the oldest. a and c are both queued, never completed: by
    // name.
    let ca = jobs.claim_next(all, "w1", LONG).await.unwrap().unwrap();
    assert_eq!(ca.account, "a");
    let cc = jobs.claim_next(all, "w1", LONG).await.unwrap().unwrap();
    assert_eq!(cc.account, "c");
    assert!(
        jobs.claim_next(all, "w1", LONG).await.unwrap().is_none(),
        "all held"
    );

    // Finishing releases and records.
    let report = json!({"objects": 10, "unhealthy": 0});
    jobs.finish(
        &ca,
        &JobProgress::default(),
        &Outcome::Done {
            report: report.clone(),
        },
    )
    .await
    .unwrap();
    let a = row(jobs, "a").await;
    assert_eq!(a.progress.stage, JobStage::Done);
    assert!(a.holder.is_none() && a.last_completed.is_some());
    assert_eq!(a.last_report, report);
    jobs.finish(
        &cc,
        &JobProgress::default(),
        &Outcome::Failed {
            error: "bad root".into(),
        },
    )
    .await
    .unwrap();
    let c = row(jobs, "c").await;
    assert_eq!(c.progress.stage, JobStage::Failed);
    assert_eq!(c.progress.last_error.as_deref(), Some("bad root"));
    assert!(c.last_completed.is_none());
    // A finished account is not claimed again in the same round.
    assert!(jobs.claim_next(all, "w1", LONG).await.unwrap().is_none());
    jobs.finish(
        &c3,
        &p,
        &Outcome::Done {
            report: json!({"objects": 10}),
        },
    )
    .await
    .unwrap();
    assert_eq!(row(jobs, "b").await.progress.counts.unhealthy, 2);
}

fn answer(si: u8, options: u8, account: &str) -> KeptAnswer {
    KeptAnswer {
        key: AnswerKey {
            grid: [7; 16],
            si: [si; 16],
            options,
        },
        account: account.into(),
        results: format!(r#"{{"storage-index": "{si}", "results": {{"healthy": true}}}}"#),
    }
}

/// Answers are kept by round and key; the first kept under a key stays.
async fn answers(jobs: &dyn Jobs, round: u64) {
    let a = answer(1, 0, "alice");
    assert!(jobs.kept_answer(round, &a.key).await.unwrap().is_none());
    jobs.keep_answers(round, &[]).await.unwrap();
    jobs.keep_answers(round, &[a.clone(), answer(2, 0, "alice")])
        .await
        .unwrap();
    assert_eq!(
        jobs.kept_answer(round, &a.key).await.unwrap(),
        Some(a.clone())
    );
    // Kept again, by another account: the first stays.
    jobs.keep_answers(round, &[answer(1, 0, "bob")])
        .await
        .unwrap();
    assert_eq!(
        jobs.kept_answer(round, &a.key)
            .await
            .unwrap()
            .unwrap()
            .account,
        "alice"
    );
    // Every part of the key counts: other options, another grid, another
    // round are other checks.
    let lease = answer(1, 2, "carol");
    assert!(jobs.kept_answer(round, &lease.key).await.unwrap().is_none());
    jobs.keep_answers(round, std::slice::from_ref(&lease))
        .await
        .unwrap();
    assert_eq!(
        jobs.kept_answer(round, &lease.key).await.unwrap(),
        Some(lease)
    );
    let mut other_grid = a.key;
    other_grid.grid[0] = 8;
    assert!(jobs
        .kept_answer(round, &other_grid)
        .await
        .unwrap()
        .is_none());
    assert!(jobs.kept_answer(round + 1, &a.key).await.unwrap().is_none());
    let (n, bytes) = jobs.kept_answers(round).await.unwrap();
    assert_eq!(n, 3);
    assert_eq!(bytes, 3 * a.results.len() as u64);
}

async fn rounds(jobs: &dyn Jobs, all: &[String], first: u64) {
    // Every account ended its round: a new round, with every account due
    // (no max age), c (failed) included.
    let policy = RoundPolicy {
        accounts: all.to_vec(),
        ..Default::default()
    };
    let r2 = jobs.start_round(&policy).await.unwrap();
    assert!(r2.number > first && !r2.resumed);
    assert_eq!(r2.queued, all);
    // One account done, then "killed": the round stays open and a new
    // start joins it without redoing the done one.
    let ca = jobs.claim("a", "w1", LONG).await.unwrap().unwrap();
    jobs.finish(
        &ca,
        &JobProgress::default(),
        &Outcome::Done { report: json!({}) },
    )
    .await
    .unwrap();
    let cb = jobs.claim("b", "w1", SHORT).await.unwrap().unwrap();
    jobs.update(
        &cb,
        &JobProgress {
            stage: JobStage::Manifest,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let again = jobs.start_round(&policy).await.unwrap();
    assert_eq!(again.number, r2.number);
    assert!(again.resumed);
    assert!(again.queued.is_empty(), "{:?}", again.queued);
    // A new account joins the open round; a forced one too.
    jobs.upsert_accounts(&[spec("d", 1)]).await.unwrap();
    let with_d = RoundPolicy {
        accounts: names(&["a", "b", "c", "d"]),
        rerun: names(&["a"]),
        ..Default::default()
    };
    let joined = jobs.start_round(&with_d).await.unwrap();
    assert!(joined.resumed);
    assert_eq!(joined.queued, names(&["a", "d"]));
    // b's holder died: claimable once its lease ran out, at its stage.
    tokio::time::sleep(SHORT * 2).await;
    let mut order = vec![];
    while let Some(c) = jobs.claim_next(&with_d.accounts, "w2", LONG).await.unwrap() {
        if c.account == "b" {
            assert_eq!(c.row.progress.stage, JobStage::Manifest);
        }
        order.push(c.account.clone());
        jobs.finish(
            &c,
            &JobProgress::default(),
            &Outcome::Done { report: json!({}) },
        )
        .await
        .unwrap();
    }
    // Never completed (c, d) first, then the oldest completion.
    assert_eq!(&order[..2], ["c", "d"]);
    order.sort();
    assert_eq!(order, names(&["a", "b", "c", "d"]));

    // With a max age, accounts completed within it are not due, unless
    // forced.
    let aged = RoundPolicy {
        accounts: names(&["a", "b", "c", "d"]),
        max_age: Some(Duration::from_secs(3600)),
        rerun: names(&["b"]),
    };
    let r3 = jobs.start_round(&aged).await.unwrap();
    assert!(!r3.resumed);
    assert_eq!(r3.queued, names(&["b"]));
    let cb = jobs
        .claim_next(&aged.accounts, "w1", LONG)
        .await
        .unwrap()
        .unwrap();
    jobs.finish(
        &cb,
        &JobProgress::default(),
        &Outcome::Done {
            report: json!({"kept": true}),
        },
    )
    .await
    .unwrap();
    // Rows of accounts no longer in the file are kept and left alone.
    let r4 = jobs
        .start_round(&RoundPolicy {
            accounts: names(&["a"]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r4.queued, names(&["a"]));
    assert_eq!(jobs.jobs().await.unwrap().len(), 4);
}

/// What [`suite`] left, seen by a new connection.
pub(crate) async fn after_reopen(jobs: &dyn Jobs) {
    let rows = jobs.jobs().await.unwrap();
    assert_eq!(rows.len(), 4);
    let b = rows.iter().find(|r| r.name == "b").unwrap();
    assert_eq!(b.progress.stage, JobStage::Done);
    assert_eq!(b.last_report, json!({"kept": true}));
    let a = rows.iter().find(|r| r.name == "a").unwrap();
    assert_eq!(a.progress.stage, JobStage::Queued);
    // The open round's answers are still there.
    let kept = answer(9, 2, "kept");
    assert_eq!(
        jobs.kept_answer(a.round, &kept.key).await.unwrap(),
        Some(kept)
    );
    assert_eq!(jobs.kept_answers(a.round).await.unwrap().0, 1);
}
