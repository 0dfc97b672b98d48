//! The conformance suite every [`Store`] implementation must pass: runs,
//! traversal state and stage positions, each keyed by run and stage and
//! kept apart from other runs', commits atomic and durable.
//!
//! [`suite`] runs on an empty store; [`after_reopen`] on the same store
//! opened again (by a new connection, or a new process), to show that what
//! was committed is still there.

use super::*;
use serde_json::json;

fn cap(n: u8) -> Cap {
    let key = steward_cap::base32::encode(&[n; 16]);
    let hash = steward_cap::base32::encode(&[n.wrapping_add(1); 32]);
    Cap::parse(&format!("URI:DIR2:{key}:{hash}")).unwrap()
}

fn task(id: u64) -> DirTask {
    DirTask {
        id,
        cap: cap(id as u8),
        path: vec!["a".into(), format!("d{id}"), "é".into()],
    }
}

const A: StageKey<'static> = StageKey {
    run: "run-a",
    stage: StageName::Traverse,
};
const B: StageKey<'static> = StageKey {
    run: "run-b",
    stage: StageName::Traverse,
};

pub(crate) async fn suite(store: &dyn Store) {
    runs(store).await;
    traversal(store).await;
    positions(store).await;
    finish_and_delete(store).await;
    // State left for after_reopen.
    let mut r = RunRecord::new("kept", "manifest", json!({"root": "x"}));
    r.status = RunStatus::Done;
    store.put_run(&r).await.unwrap();
    let k = StageKey {
        run: "kept",
        stage: StageName::Traverse,
    };
    let p = TraversalProgress {
        output: 77,
        next_id: 3,
        ..Default::default()
    };
    store
        .traversal_start(k, &task(1), Some([9; 16]), &p)
        .await
        .unwrap();
    let batch = Batch {
        seen: vec![[4; 16]],
        added: vec![task(2)],
        finished: vec![1],
    };
    store.traversal_commit(k, &batch, &p).await.unwrap();
}

pub(crate) async fn after_reopen(store: &dyn Store) {
    let r = store.run("kept").await.unwrap().expect("kept run");
    assert_eq!(r.status, RunStatus::Done);
    let k = StageKey {
        run: "kept",
        stage: StageName::Traverse,
    };
    assert_eq!(
        store.traversal_progress(k).await.unwrap().unwrap().output,
        77
    );
    assert_eq!(
        store.frontier(k, u64::MAX, 10).await.unwrap(),
        vec![task(2)]
    );
    let mut seen = vec![];
    store.seen(k, &mut |s| seen.push(s)).await.unwrap();
    seen.sort();
    assert_eq!(seen, vec![[4; 16], [9; 16]]);
}

async fn runs(store: &dyn Store) {
    assert!(store.run("nope").await.unwrap().is_none());
    let mut a = RunRecord::new("r1", "check", json!({"options": "verify=true"}));
    store.put_run(&a).await.unwrap();
    let b = RunRecord::new("r2", "manifest", json!({"root": "abc"}));
    store.put_run(&b).await.unwrap();
    assert_eq!(store.run("r1").await.unwrap().unwrap(), a);
    a.status = RunStatus::Failed {
        message: "gateway down".into(),
    };
    a.detail = json!({"objects": 12});
    store.put_run(&a).await.unwrap();
    assert_eq!(store.run("r1").await.unwrap().unwrap(), a, "replaced");
    let ids: Vec<String> = store
        .runs()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        ids,
        vec!["r1", "r2"],
        "oldest first, a replaced run keeps its place"
    );
    store.delete_run("r1").await.unwrap();
    store.delete_run("r2").await.unwrap();
    assert!(store.runs().await.unwrap().is_empty());
}

async fn traversal(store: &dyn Store) {
    assert!(store.traversal_progress(A).await.unwrap().is_none());
    let p0 = TraversalProgress {
        next_id: 1,
        ..Default::default()
    };
    store
        .traversal_start(A, &task(0), Some([1; 16]), &p0)
        .await
        .unwrap();
    store.traversal_start(B, &task(0), None, &p0).await.unwrap();
    assert_eq!(store.traversal_progress(A).await.unwrap().unwrap(), p0);
    assert_eq!(
        store.frontier(A, u64::MAX, 10).await.unwrap(),
        vec![task(0)]
    );

    // Root listed: children 1..=5 added, the root finished, in one commit.
    let mut p1 = p0.clone();
    p1.next_id = 6;
    p1.output = 1234;
    p1.stats.count_directories = 1;
    p1.unlisted = 2;
    p1.bad_caps = 3;
    let batch = Batch {
        seen: vec![[2; 16], [3; 16], [2; 16]],
        added: (1..=5).map(task).collect(),
        finished: vec![0],
    };
    store.traversal_commit(A, &batch, &p1).await.unwrap();
    assert_eq!(store.traversal_progress(A).await.unwrap().unwrap(), p1);
    // Highest ids first, returned lowest first; bounded by max_id and limit.
    let ids = |v: Vec<DirTask>| v.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.frontier(A, u64::MAX, 10).await.unwrap()),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        ids(store.frontier(A, u64::MAX, 2).await.unwrap()),
        vec![4, 5]
    );
    assert_eq!(ids(store.frontier(A, 3, 2).await.unwrap()), vec![2, 3]);
    assert_eq!(
        store.frontier(A, 5, 1).await.unwrap(),
        vec![task(5)],
        "caps and paths kept"
    );
    let mut seen = vec![];
    store.seen(A, &mut |s| seen.push(s)).await.unwrap();
    seen.sort();
    assert_eq!(seen, vec![[1; 16], [2; 16], [3; 16]], "each once");
    // Other runs are untouched.
    assert_eq!(ids(store.frontier(B, u64::MAX, 10).await.unwrap()), vec![0]);
    let mut seen_b = vec![];
    store.seen(B, &mut |s| seen_b.push(s)).await.unwrap();
    assert!(seen_b.is_empty());
    // A restart forgets the old state.
    store.traversal_start(B, &task(7), None, &p0).await.unwrap();
    assert_eq!(ids(store.frontier(B, u64::MAX, 10).await.unwrap()), vec![7]);
}

async fn positions(store: &dyn Store) {
    let check = StageKey {
        run: "run-a",
        stage: StageName::Check,
    };
    let repair = StageKey {
        run: "run-a",
        stage: StageName::Repair,
    };
    assert!(store.position(check).await.unwrap().is_none());
    let p = StagePosition {
        input_offset: 100,
        input_lines: 3,
        input_prefix_hash: "abc".into(),
        input_prefix_len: 100,
        output: 400,
        tally: json!({"healthy": 2}),
        shape: Default::default(),
        done: false,
    };
    store.set_position(check, &p).await.unwrap();
    assert_eq!(store.position(check).await.unwrap().unwrap(), p);
    assert!(store.position(repair).await.unwrap().is_none(), "per stage");
    let mut p2 = p.clone();
    p2.done = true;
    p2.output = 900;
    store.set_position(check, &p2).await.unwrap();
    assert_eq!(store.position(check).await.unwrap().unwrap(), p2);
    // A traversal's progress and a check's position of one run coexist.
    assert!(store.traversal_progress(A).await.unwrap().is_some());
}

async fn finish_and_delete(store: &dyn Store) {
    store.traversal_finish(A).await.unwrap();
    assert!(store.frontier(A, u64::MAX, 10).await.unwrap().is_empty());
    let mut seen = vec![];
    store.seen(A, &mut |s| seen.push(s)).await.unwrap();
    assert!(seen.is_empty());
    assert!(
        store.traversal_progress(A).await.unwrap().is_some(),
        "the progress (stats, output position) stays"
    );
    store
        .put_run(&RunRecord::new("run-a", "x", json!(null)))
        .await
        .unwrap();
    store.delete_run("run-a").await.unwrap();
    assert!(store.traversal_progress(A).await.unwrap().is_none());
    let check = StageKey {
        run: "run-a",
        stage: StageName::Check,
    };
    assert!(store.position(check).await.unwrap().is_none());
    assert_eq!(
        store.frontier(B, u64::MAX, 10).await.unwrap().len(),
        1,
        "B kept"
    );
    store.delete_run("run-b").await.unwrap();
}
