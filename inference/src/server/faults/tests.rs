//! Unit tests of the fault decisions and of the event shaping.

use super::*;

fn plan(error_rate: f64, delay_ms: u64, phone_number: bool) -> FaultPlan {
    FaultPlan {
        error_rate,
        token_delay: Duration::from_millis(delay_ms),
        phone_number,
    }
}

#[test]
fn every_fault_flag_without_enable_is_refused_by_name() {
    let cases = [
        (
            FaultArgs {
                fault_error_rate: Some(0.3),
                ..FaultArgs::default()
            },
            "--fault-error-rate",
        ),
        (
            FaultArgs {
                fault_token_delay: Some(Duration::from_millis(50)),
                ..FaultArgs::default()
            },
            "--fault-token-delay",
        ),
        (
            FaultArgs {
                fault_phone_number: true,
                ..FaultArgs::default()
            },
            "--fault-phone-number",
        ),
    ];
    for (args, flag) in cases {
        let err = args.plan().expect_err(flag);
        assert_eq!(err, FaultError::NotEnabled { flag });
        let msg = err.to_string();
        assert!(msg.contains("needs --enable-fault-injection"), "{msg}");
        assert!(msg.contains("tests only"), "{msg}");
        let enabled = FaultArgs {
            enable_fault_injection: true,
            ..args
        };
        assert!(enabled.plan().expect(flag).is_some(), "{flag}");
    }
    assert_eq!(FaultArgs::default().plan(), Ok(None));
    let bare = FaultArgs {
        enable_fault_injection: true,
        ..FaultArgs::default()
    };
    assert_eq!(bare.plan(), Ok(Some(plan(0.0, 0, false))));
}

#[test]
fn error_rate_must_be_a_fraction() {
    assert_eq!(parse_fraction("0.3"), Ok(0.3));
    assert_eq!(parse_fraction("1"), Ok(1.0));
    assert_eq!(parse_fraction("0"), Ok(0.0));
    for bad in ["1.5", "-0.1", "NaN", "30%", ""] {
        let err = parse_fraction(bad).expect_err(bad);
        assert!(err.contains("between 0.0 and 1.0"), "{err}");
    }
}

#[test]
fn a_request_fails_when_its_draw_is_below_the_rate() {
    let never = plan(0.0, 0, false);
    let always = plan(1.0, 0, false);
    let some = plan(0.3, 0, false);
    for draw in [0.0, 0.29, 0.3, 0.5, 0.999_999] {
        assert!(!never.fails(draw), "{draw}");
        assert!(always.fails(draw), "{draw}");
        assert_eq!(some.fails(draw), draw < 0.3, "{draw}");
    }
}

#[test]
fn tokens_sent_only_at_the_end_are_still_delayed_once_each() {
    let p = plan(0.0, 100, false);
    assert_eq!(p.delay_at_end(4, 4), Duration::ZERO);
    assert_eq!(p.delay_at_end(4, 1), Duration::from_millis(300));
    assert_eq!(p.delay_at_end(2, 3), Duration::ZERO);
    assert_eq!(plan(0.0, 0, true).delay_at_end(4, 0), Duration::ZERO);
}

#[test]
fn only_delay_or_phone_number_change_answers() {
    assert!(!plan(0.5, 0, false).shapes_answers());
    assert!(plan(0.0, 1, false).shapes_answers());
    assert!(plan(0.0, 0, true).shapes_answers());
    assert_eq!(plan(0.0, 0, false).answer_suffix(), None);
    let suffix = plan(0.0, 0, true).answer_suffix().expect("a suffix");
    assert!(suffix.contains(FAKE_PHONE_NUMBER), "{suffix}");
}

#[test]
fn seeded_draws_fail_close_to_the_rate() {
    let faults = Faults::new(plan(0.3, 0, false), Metrics::new());
    let failed = (0..1000)
        .filter(|_| faults.fail_before_answer().is_err())
        .count();
    assert!((250..=350).contains(&failed), "{failed} of 1000 failed");
    let counted = faults
        .metrics
        .faults_injected
        .with_label_values(&["error"])
        .get();
    assert_eq!(counted, failed as u64);
    assert_eq!(faults.metrics.fault_injection_enabled.get(), 1);
}

#[tokio::test]
async fn shaped_answers_end_with_the_phone_number_before_the_last_event() {
    use crate::scheduler::{Completion, FinishReason};
    let faults = Faults::new(plan(0.0, 0, true), Metrics::new());
    let (tx, rx) = mpsc::unbounded_channel();
    let mut out = faults.shape(rx);
    tx.send(GenEvent::Delta("頭痛".into())).expect("send");
    let done = Completion {
        finish_reason: FinishReason::Length,
        prompt_tokens: 3,
        tokens: vec![7, 7],
    };
    tx.send(GenEvent::Done(done)).expect("send");
    let mut seen = Vec::new();
    while let Some(ev) = out.recv().await {
        seen.push(ev);
    }
    assert!(
        matches!(&seen[0], GenEvent::Delta(t) if t == "頭痛"),
        "{seen:?}"
    );
    assert!(
        matches!(&seen[1], GenEvent::Delta(t) if t == FAKE_PHONE_TEXT),
        "{seen:?}"
    );
    assert!(matches!(&seen[2], GenEvent::Done(_)), "{seen:?}");
    assert_eq!(seen.len(), 3);
}
