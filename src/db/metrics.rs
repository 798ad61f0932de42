//! The node's metrics, in the Prometheus exposition format: `/.gitdb/metrics` at the mount and
//! `gitdb metrics` (through the daemon's door, or from the repository alone), for a scraper or
//! node_exporter's textfile collector.
//!
//! The prometheus crate keeps the live metrics that are events (commits and their latency) and
//! writes the exposition in the classic text format, which Prometheus and node_exporter's
//! textfile collector both read with every type intact. What is a state rather than
//! an event (dirty keys, journal size, peers up, conflicts) is read at the moment of the
//! scrape, from the same places `status` reads it, so nothing has to be kept in step. The
//! layers above add their own (the mount's requests by FUSE operation, see
//! [`GitDb::add_metrics`]); replication's come through its hook (see [`super::replication`]).
//!
//! Names are `gitdb_*`; counters count from the start of this process, as Prometheus expects
//! of a counter (a restart is seen as a reset).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::db::GitDb;

/// What adds metrics of a layer above to a scrape: it registers them in the registry given.
pub type MetricsSource = Box<dyn Fn(&Scrape) + Send + Sync>;

/// One scrape being assembled: metrics registered here are written out together. A metric
/// that cannot be registered (a name taken twice) is logged and left out, never a failure
/// of the scrape.
pub struct Scrape {
    registry: Registry,
}

impl Scrape {
    fn new() -> Scrape {
        Scrape {
            registry: Registry::new_custom(Some("gitdb".into()), None)
                .unwrap_or_else(|_| Registry::new()),
        }
    }

    /// Adds `metric`.
    pub fn add(&self, metric: impl prometheus::core::Collector + 'static) {
        if let Err(e) = self.registry.register(Box::new(metric)) {
            log::warn!("metrics: {e}");
        }
    }

    /// A gauge named `name` with value `value`.
    pub fn gauge(&self, name: &str, help: &str, value: i64) {
        if let Ok(g) = IntGauge::new(name, help) {
            g.set(value);
            self.add(g);
        }
    }

    /// A counter named `name` (by convention ending in `_total`) at `value`.
    pub fn counter(&self, name: &str, help: &str, value: u64) {
        if let Ok(c) = IntCounter::new(name, help) {
            c.inc_by(value);
            self.add(c);
        }
    }

    /// A gauge with one label, one sample per (label value, value).
    pub fn gauges<'a>(
        &self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = (&'a str, i64)>,
    ) {
        if let Ok(vec) = IntGaugeVec::new(Opts::new(name, help), &[label]) {
            for (l, v) in values {
                vec.with_label_values(&[l]).set(v);
            }
            self.add(vec);
        }
    }

    fn encode(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            log::warn!("encoding the metrics: {e}");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The db's live metrics and the sources registered by the layers above.
pub(crate) struct DbMetrics {
    commits: IntCounter,
    commit_seconds: Histogram,
    /// Leaf lock: taken alone, during a scrape or a registration.
    sources: Mutex<Vec<MetricsSource>>,
}

/// Commit latency buckets, from a fast local commit (~1 ms) to one waiting on a slow disk.
const COMMIT_BUCKETS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

impl DbMetrics {
    pub(crate) fn new() -> DbMetrics {
        // Fixed names and help texts: these cannot fail, and a failure would be a bug here.
        let commits = IntCounter::new(
            "commits_total",
            "Commits of the working layer made by this process",
        )
        .expect("a valid counter");
        let commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "commit_duration_seconds",
                "Time to make a commit durable (trees, commit, ref, journal)",
            )
            .buckets(COMMIT_BUCKETS.to_vec()),
        )
        .expect("a valid histogram");
        DbMetrics {
            commits,
            commit_seconds,
            sources: Mutex::new(Vec::new()),
        }
    }

    /// A commit was made, taking `took`.
    pub(crate) fn committed(&self, took: Duration) {
        self.commits.inc();
        self.commit_seconds.observe(took.as_secs_f64());
    }

    fn lock_sources(&self) -> MutexGuard<'_, Vec<MetricsSource>> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl GitDb {
    /// Adds `source` to every later scrape (the mount's request counters, say). It must not
    /// call back into the db's metrics.
    pub fn add_metrics(&self, source: MetricsSource) {
        self.metrics.lock_sources().push(source);
    }

    /// The node's metrics now, in the Prometheus text exposition format.
    pub fn metrics_text(&self) -> String {
        let scrape = Scrape::new();
        if let Ok(info) = IntGaugeVec::new(
            Opts::new("node_info", "This node: its id, branch and gitdb version"),
            &["node", "branch", "version"],
        ) {
            info.with_label_values(&[
                self.node.as_str(),
                self.branch.as_str(),
                env!("CARGO_PKG_VERSION"),
            ])
            .set(1);
            scrape.add(info);
        }
        scrape.add(self.metrics.commits.clone());
        scrape.add(self.metrics.commit_seconds.clone());
        let status = self.status_summary(0);
        scrape.gauge(
            "dirty_keys",
            "Uncommitted changes in the working layer",
            status.dirty_count as i64,
        );
        let journal =
            std::fs::metadata(self.git_dir().join("gitdb/journal")).map_or(0, |m| m.len());
        scrape.gauge(
            "journal_bytes",
            "Size of the journal of uncommitted changes",
            journal as i64,
        );
        scrape.gauge(
            "conflicts",
            "Keys left in conflict by keep-both merges at the head",
            self.conflicts().map_or(0, |c| c.len()) as i64,
        );
        if let Some(head) = self.head()
            && let Ok(info) = self.commit_info(head)
        {
            scrape.gauge(
                "head_commit_time_seconds",
                "Commit time of the branch head, as Unix time",
                info.seconds,
            );
        }
        self.replication_metrics(&scrape, &status.peers);
        for source in self.metrics.lock_sources().iter() {
            source(&scrape);
        }
        scrape.encode()
    }

    /// Peers up and down, rounds, bytes and the age of the last good exchange.
    fn replication_metrics(&self, scrape: &Scrape, peers: &[super::PeerStatus]) {
        let Some(counters) = self.replication_counters() else {
            return;
        };
        let up = peers.iter().filter(|p| p.alive).count() as i64;
        scrape.gauges(
            "peers",
            "Gossip peers by state",
            "state",
            [("up", up), ("down", peers.len() as i64 - up)],
        );
        scrape.counter(
            "sync_rounds_total",
            "Gossip rounds started (anti-entropy, after a commit, or by sync)",
            counters.rounds,
        );
        scrape.counter(
            "gossip_sent_bytes_total",
            "Bytes sent to peers",
            counters.bytes_sent,
        );
        scrape.counter(
            "gossip_received_bytes_total",
            "Bytes received from peers",
            counters.bytes_received,
        );
        if let Some(ms) = peers.iter().filter_map(|p| p.last_contact_ms).min()
            && let Ok(g) = prometheus::Gauge::new(
                "last_sync_age_seconds",
                "Time since the last good exchange with any peer",
            )
        {
            g.set(ms as f64 / 1000.0);
            scrape.add(g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Options;

    #[test]
    fn a_scrape_counts_commits_and_reads_the_state_at_that_moment() {
        let dir = tempfile::tempdir().unwrap();
        let db = GitDb::open(
            dir.path().join("r.git"),
            crate::NodeId::new("n1").unwrap(),
            Options::default(),
        )
        .unwrap();
        db.set("/a", b"1").unwrap();
        db.commit("one", 1).unwrap();
        db.set("/b", b"2").unwrap();
        db.add_metrics(Box::new(|s: &Scrape| s.gauge("extra", "From above", 7)));
        let text = db.metrics_text();
        for line in [
            "gitdb_node_info{branch=\"main\",node=\"n1\",version=\"",
            "# TYPE gitdb_commits_total counter\n",
            "gitdb_commits_total 1\n",
            "gitdb_commit_duration_seconds_count 1\n",
            "gitdb_dirty_keys 1\n",
            "gitdb_conflicts 0\n",
            "gitdb_extra 7\n",
        ] {
            assert!(text.contains(line), "{line:?} not in:\n{text}");
        }
        assert!(
            !text.contains("gitdb_peers"),
            "no replication, no peers: {text}"
        );
    }
}
