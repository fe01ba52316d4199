//! The client's byte budget: pure accounting, and the gate that makes a
//! submitting loop wait.

use ppcore::budget::{BudgetGate, ByteBudget};
use proptest::prelude::*;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Waits (bounded) until `gate` has `n` threads waiting.
fn until_waiting(gate: &BudgetGate, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while gate.waiting() != n {
        assert!(Instant::now() < deadline, "no thread came to wait");
        std::thread::yield_now();
    }
}

proptest! {
    #[test]
    fn held_bytes_stay_within_the_limit(
        ops in proptest::collection::vec((any::<bool>(), 0u64..400), 0..200),
    ) {
        let mut budget = ByteBudget::new(1000);
        let mut held: Vec<u64> = Vec::new();
        for (take, bytes) in ops {
            if take {
                let before = budget;
                if budget.try_take(bytes) {
                    held.push(bytes);
                } else {
                    prop_assert_eq!(budget, before, "a refusal takes nothing");
                    prop_assert!(before.used() + bytes > 1000);
                }
            } else if let Some(bytes) = held.pop() {
                budget.give_back(bytes);
            }
            prop_assert_eq!(budget.used(), held.iter().sum::<u64>());
            prop_assert!(budget.used() <= 1000);
        }
    }
}

#[test]
fn a_job_over_the_whole_budget_goes_alone() {
    let mut budget = ByteBudget::new(100);
    assert!(budget.try_take(500), "alone, it is admitted");
    assert!(!budget.try_take(1), "nothing else while it is held");
    budget.give_back(500);
    assert!(budget.try_take(60));
    assert!(!budget.try_take(500), "not beside another");
    assert!(budget.try_take(40));
    assert!(!budget.try_take(u64::MAX), "no overflow");
    assert_eq!((budget.used(), budget.limit()), (100, 100));
}

#[test]
fn try_acquire_hands_back_when_full() {
    let gate = BudgetGate::new(1000);
    let a = gate.try_acquire(600).expect("fits");
    assert!(gate.try_acquire(600).is_none());
    assert_eq!(gate.used(), 600);
    drop(a);
    assert_eq!(gate.used(), 0);
    let b = gate.try_acquire(600).expect("fits again");
    assert_eq!(b.bytes(), 600);
}

#[test]
fn a_submitting_loop_waits_for_bytes_to_leave() {
    // A producer "submits" ten 400-byte jobs against a 1000-byte budget and
    // hands each permit to a "sender" (this thread), which sends one job at
    // a time: the producer can never hold more than two unsent.
    let gate = BudgetGate::new(1000);
    let (tx, rx) = mpsc::channel();
    let producer = {
        let gate = gate.clone();
        std::thread::spawn(move || {
            for i in 0..10 {
                let permit = gate.acquire(400);
                if tx.send((i, permit)).is_err() {
                    return;
                }
            }
        })
    };
    let recv = || rx.recv_timeout(Duration::from_secs(20)).expect("a job");
    let mut queued = std::collections::VecDeque::from([recv(), recv()]);
    for next in 2..10 {
        until_waiting(&gate, 1);
        assert_eq!(gate.used(), 800, "two jobs held, the third waits");
        // One job's arguments leave the client.
        let (_sent, permit) = queued.pop_front().expect("queued");
        drop(permit);
        let (i, permit) = recv();
        assert_eq!(i, next);
        assert!(gate.used() <= 1000);
        queued.push_back((i, permit));
    }
    drop(queued);
    producer.join().expect("producer");
    assert_eq!((gate.used(), gate.waiting()), (0, 0));
}
