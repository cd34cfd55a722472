//! The task that samples metrics pages: it owns the list of targets and their latest readings,
//! scrapes every target once per period, and publishes each round as one snapshot. Readers hold a
//! [`Latest`] (cheap to clone): they read the newest snapshot without waiting and can await the next
//! round to wake a controller. The task ends when its [`Sampler`] handle is dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::prometheus::Sample;
use super::source::{MetricsSource, ScrapeError};

/// The result of the last scrape of one target.
#[derive(Clone, Debug)]
pub struct Reading {
    /// The page's samples, or why there are none.
    pub samples: Result<Vec<Sample>, ScrapeError>,
    /// When the scrape finished.
    pub at: Instant,
}

/// The latest reading of every target, by URL.
pub type Readings = BTreeMap<String, Reading>;

/// The owner's handle: sets what is sampled; dropping it stops the task.
pub struct Sampler {
    targets: watch::Sender<BTreeSet<String>>,
    latest: watch::Receiver<Arc<Readings>>,
}

/// A reader's handle on the newest snapshot.
#[derive(Clone)]
pub struct Latest(watch::Receiver<Arc<Readings>>);

impl Sampler {
    /// Starts sampling with `source` every `period`; no targets until [`Sampler::set_targets`].
    pub fn spawn<S: MetricsSource>(source: S, period: Duration) -> (Sampler, JoinHandle<()>) {
        let (targets, targets_rx) = watch::channel(BTreeSet::new());
        let (latest_tx, latest) = watch::channel(Arc::new(Readings::new()));
        let task = tokio::spawn(run(source, period, targets_rx, latest_tx));
        (Sampler { targets, latest }, task)
    }

    /// Samples exactly `urls` from the next round on (readings of dropped targets go with them).
    pub fn set_targets(&self, urls: BTreeSet<String>) {
        self.targets.send_replace(urls);
    }

    /// A reader of the readings.
    pub fn latest(&self) -> Latest {
        Latest(self.latest.clone())
    }
}

impl Latest {
    /// The newest snapshot (never waits).
    pub fn snapshot(&self) -> Arc<Readings> {
        self.0.borrow().clone()
    }

    /// Waits for the next round; `false` once the sampler has stopped.
    pub async fn changed(&mut self) -> bool {
        self.0.changed().await.is_ok()
    }
}

async fn run<S: MetricsSource>(
    source: S,
    period: Duration,
    mut targets: watch::Receiver<BTreeSet<String>>,
    latest: watch::Sender<Arc<Readings>>,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = targets.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        }
        let urls: Vec<String> = targets.borrow_and_update().iter().cloned().collect();
        let scrapes = urls.iter().map(|url| source.scrape(url));
        let results = futures::future::join_all(scrapes).await;
        let at = Instant::now();
        let readings: Readings = urls
            .into_iter()
            .zip(results)
            .map(|(url, samples)| (url, Reading { samples, at }))
            .collect();
        latest.send_replace(Arc::new(readings));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signals::source::FakeSource;

    /// Waits (at most 5 s) for a snapshot that satisfies `ok`.
    async fn until(latest: &mut Latest, ok: impl Fn(&Readings) -> bool) -> Arc<Readings> {
        let wait = async {
            loop {
                let snapshot = latest.snapshot();
                if ok(&snapshot) {
                    return snapshot;
                }
                assert!(latest.changed().await, "sampler stopped");
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("a matching round within 5 s")
    }

    fn value(r: &Readings, url: &str) -> Option<f64> {
        r.get(url)?.samples.as_ref().ok()?.first().map(|s| s.value)
    }

    #[tokio::test]
    async fn samples_its_targets_each_round_and_readers_see_the_latest() {
        let fake = FakeSource::default();
        fake.serve("http://a/metrics", "x 1\n");
        let (sampler, task) = Sampler::spawn(fake.clone(), Duration::from_millis(20));
        let mut latest = sampler.latest();
        sampler.set_targets(["http://a/metrics".into(), "http://b/metrics".into()].into());
        let r = until(&mut latest, |r| r.len() == 2).await;
        assert_eq!(value(&r, "http://a/metrics"), Some(1.0));
        assert!(
            r["http://b/metrics"].samples.is_err(),
            "b serves nothing yet"
        );
        fake.serve("http://b/metrics", "x 2\n");
        until(&mut latest, |r| value(r, "http://b/metrics") == Some(2.0)).await;
        sampler.set_targets(["http://b/metrics".into()].into());
        until(&mut latest, |r| !r.contains_key("http://a/metrics")).await;
        drop(sampler);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task ends with its handle")
            .expect("no panic");
        assert!(
            !latest.changed().await,
            "readers learn that sampling stopped"
        );
    }
}
