//! Prometheus's alerting state machine, replayable over history.
//!
//! [`AlertMachine`] holds the active alerts of one alerting rule and advances them one rule
//! evaluation at a time, as Prometheus's rule manager does (`rules/alerting.go`, 2.42 onwards):
//!
//! * a label set present in the result that has no active alert (or only a resolved one)
//!   becomes *pending* with `active_at` = the evaluation time;
//! * a pending alert fires at the first evaluation with `t - active_at >= for`, which with
//!   `for: 0` is the evaluation that created it;
//! * a pending alert whose label set is absent is dropped;
//! * a firing alert whose label set is absent keeps firing while
//!   `t - keep_firing_since < keep_firing_for` (`keep_firing_since` = the first evaluation it
//!   was absent), then resolves; present again resets `keep_firing_since`;
//! * a resolved alert never comes back: a later match starts a new pending alert.
//!
//! Both the `alert_state` / `alert_episodes` query functions and `tsq backtest` drive this one
//! implementation, so they cannot disagree.

use std::collections::BTreeMap;

use tsq_storage::Labels;

/// The state of an alert, as in the `alertstate` label of Prometheus's `ALERTS` series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertState {
    /// Condition not met (or resolved).
    Inactive,
    /// Condition met for less than `for`.
    Pending,
    /// Condition met for at least `for` (or kept firing by `keep_firing_for`).
    Firing,
}

impl AlertState {
    /// `"inactive"`, `"pending"` or `"firing"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule: a label set and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The alert's labels (the rule's labels applied, no `__name__`).
    pub labels: Labels,
    /// The current state.
    pub state: AlertState,
    /// When the condition started holding (ms).
    pub active_at: i64,
    /// When the alert started firing (ms), if it has.
    pub fired_at: Option<i64>,
    /// The first evaluation at which a firing alert's condition was absent (ms).
    pub keep_firing_since: Option<i64>,
    /// The last value seen while the condition held.
    pub value: f64,
    /// The largest value seen since `active_at` (NaN values ignored).
    pub peak: f64,
}

/// Something that happened to an alert at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertEvent {
    /// A new alert became pending (or fired at once with `for: 0`; a `Fired` follows).
    Pending {
        /// The alert's labels.
        labels: Labels,
        /// Evaluation time (ms).
        at: i64,
    },
    /// A pending alert fired.
    Fired {
        /// The alert's labels.
        labels: Labels,
        /// When it became pending (ms).
        active_at: i64,
        /// Evaluation time (ms).
        at: i64,
    },
    /// A pending alert was dropped without firing.
    Cancelled {
        /// The alert's labels.
        labels: Labels,
        /// When it became pending (ms).
        active_at: i64,
        /// Evaluation time (ms).
        at: i64,
    },
    /// A firing alert resolved.
    Resolved {
        /// The alert's labels.
        labels: Labels,
        /// When it became pending (ms).
        active_at: i64,
        /// When it fired (ms).
        fired_at: i64,
        /// Evaluation time at which it was first seen resolved (ms).
        at: i64,
        /// The largest value seen since `active_at`.
        peak: f64,
    },
}

/// The active alerts of one alerting rule.
#[derive(Debug, Clone)]
pub struct AlertMachine {
    for_ms: i64,
    keep_firing_for_ms: i64,
    active: BTreeMap<Labels, Alert>,
}

impl AlertMachine {
    /// A rule with these `for` and `keep_firing_for` durations (ms; 0 = none).
    pub fn new(for_ms: i64, keep_firing_for_ms: i64) -> Self {
        AlertMachine {
            for_ms: for_ms.max(0),
            keep_firing_for_ms: keep_firing_for_ms.max(0),
            active: BTreeMap::new(),
        }
    }

    /// Advances the rule by one evaluation at `t` (ms) whose result is `result`: the alert
    /// label sets (unique; the caller has applied the rule's labels and dropped `__name__`)
    /// with their values. Appends what happened to `events`.
    pub fn eval(&mut self, t: i64, result: &[(Labels, f64)], events: &mut Vec<AlertEvent>) {
        let mut present: std::collections::HashSet<&Labels> =
            std::collections::HashSet::with_capacity(result.len());
        for (labels, v) in result {
            present.insert(labels);
            match self.active.get_mut(labels) {
                Some(a) if a.state != AlertState::Inactive => {
                    a.value = *v;
                    if !v.is_nan() && (a.peak.is_nan() || *v > a.peak) {
                        a.peak = *v;
                    }
                }
                _ => {
                    self.active.insert(
                        labels.clone(),
                        Alert {
                            labels: labels.clone(),
                            state: AlertState::Pending,
                            active_at: t,
                            fired_at: None,
                            keep_firing_since: None,
                            value: *v,
                            peak: *v,
                        },
                    );
                    events.push(AlertEvent::Pending {
                        labels: labels.clone(),
                        at: t,
                    });
                }
            }
        }
        let kff = self.keep_firing_for_ms;
        let hold = self.for_ms;
        self.active.retain(|labels, a| {
            if !present.contains(labels) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && kff > 0 {
                    let since = *a.keep_firing_since.get_or_insert(t);
                    keep_firing = t - since < kff;
                }
                if keep_firing {
                    return true;
                }
                match a.state {
                    AlertState::Pending => {
                        events.push(AlertEvent::Cancelled {
                            labels: labels.clone(),
                            active_at: a.active_at,
                            at: t,
                        });
                    }
                    AlertState::Firing => {
                        events.push(AlertEvent::Resolved {
                            labels: labels.clone(),
                            active_at: a.active_at,
                            fired_at: a.fired_at.unwrap_or(a.active_at),
                            at: t,
                            peak: a.peak,
                        });
                    }
                    AlertState::Inactive => {}
                }
                // Prometheus keeps resolved alerts for 15 minutes only to send them to
                // Alertmanager; they never become active again, so they are dropped here.
                return false;
            }
            a.keep_firing_since = None;
            if a.state == AlertState::Pending && t - a.active_at >= hold {
                a.state = AlertState::Firing;
                a.fired_at = Some(t);
                events.push(AlertEvent::Fired {
                    labels: labels.clone(),
                    active_at: a.active_at,
                    at: t,
                });
            }
            true
        });
    }

    /// The pending and firing alerts, in label order (what `ALERTS` holds after the last
    /// evaluation).
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.active.values()
    }

    /// How many alerts are pending or firing.
    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    /// Forgets every alert (Prometheus does this when a rule exceeds its `limit`).
    pub fn reset(&mut self) {
        self.active.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(v: &str) -> Labels {
        Labels::new([("job", v)])
    }

    /// Runs the machine over `present[i]` (is the single series present at step i) and
    /// returns the state after each step.
    fn run(for_ms: i64, kff: i64, present: &[bool]) -> Vec<AlertState> {
        let mut m = AlertMachine::new(for_ms, kff);
        let mut ev = Vec::new();
        present
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let r = if p { vec![(l("a"), 1.0)] } else { vec![] };
                m.eval(i as i64 * 60_000, &r, &mut ev);
                m.alerts().next().map_or(AlertState::Inactive, |a| a.state)
            })
            .collect()
    }

    use AlertState::{Firing as F, Inactive as I, Pending as P};

    #[test]
    fn for_zero_fires_at_once() {
        assert_eq!(run(0, 0, &[true, true, false, true]), vec![F, F, I, F]);
    }

    #[test]
    fn fires_when_held_for_the_whole_duration() {
        // for 2m at 1m: pending at 0 and 1m, firing at 2m.
        assert_eq!(
            run(120_000, 0, &[true, true, true, true, false]),
            vec![P, P, F, F, I]
        );
        // A gap resets the pending timer.
        assert_eq!(
            run(120_000, 0, &[true, true, false, true, true, true]),
            vec![P, P, I, P, P, F]
        );
    }

    #[test]
    fn keep_firing_for_holds_then_resolves() {
        // kff 2m: absent at 2m (since=2m, 0<2m keep), 3m (1m<2m keep), 4m (2m, resolve).
        assert_eq!(
            run(0, 120_000, &[true, true, false, false, false, false]),
            vec![F, F, F, F, I, I]
        );
        // Present again while kept firing resets keep_firing_since.
        assert_eq!(
            run(0, 120_000, &[true, false, true, false, false, false]),
            vec![F, F, F, F, F, I]
        );
        // keep_firing_for never applies to pending alerts.
        assert_eq!(run(120_000, 600_000, &[true, false]), vec![P, I]);
    }

    #[test]
    fn events_describe_the_lifecycle() {
        let mut m = AlertMachine::new(60_000, 0);
        let mut ev = Vec::new();
        m.eval(0, &[(l("a"), 3.0)], &mut ev);
        m.eval(60_000, &[(l("a"), 5.0)], &mut ev);
        m.eval(120_000, &[(l("a"), 4.0)], &mut ev);
        m.eval(180_000, &[], &mut ev);
        m.eval(240_000, &[(l("b"), 1.0)], &mut ev);
        m.eval(300_000, &[], &mut ev);
        assert_eq!(
            ev,
            vec![
                AlertEvent::Pending {
                    labels: l("a"),
                    at: 0
                },
                AlertEvent::Fired {
                    labels: l("a"),
                    active_at: 0,
                    at: 60_000
                },
                AlertEvent::Resolved {
                    labels: l("a"),
                    active_at: 0,
                    fired_at: 60_000,
                    at: 180_000,
                    peak: 5.0
                },
                AlertEvent::Pending {
                    labels: l("b"),
                    at: 240_000
                },
                AlertEvent::Cancelled {
                    labels: l("b"),
                    active_at: 240_000,
                    at: 300_000
                },
            ]
        );
    }
}
