//! `GET /metrics`: every meter of the node in the Prometheus text format. The names are listed
//! with their meaning in `docs/OPERATIONS.md`.

use chat_telemetry::{Exposition, Histogram};

use super::Ops;

impl Ops {
    /// The Prometheus text of one scrape.
    pub fn render_metrics(&self) -> String {
        let mut e = Exposition::new();
        let version = env!("CARGO_PKG_VERSION");
        e.gauges(
            "chatd_build_info",
            "Always 1; the version label says which chatd runs.",
            "version",
            [(version, 1.0)],
        );
        e.gauge(
            "chatd_start_time_seconds",
            "When the node started, unix seconds.",
            self.started_unix as f64,
        );
        e.gauge(
            "chatd_uptime_seconds",
            "Seconds since the node started.",
            self.started.elapsed().as_secs_f64().floor(),
        );
        e.gauge(
            "chatd_ready",
            "1 while the node takes traffic, 0 once it is draining for shutdown.",
            if self.is_ready() { 1.0 } else { 0.0 },
        );
        e.gauge(
            "chatd_store_disk_bytes",
            "Bytes the sled database uses on disk (re-read every 5 s).",
            self.disk_bytes() as f64,
        );
        self.render_live(&mut e);
        self.render_push(&mut e);
        e.counters_multi(
            "chatd_http_requests_total",
            "HTTP API answers by route and status code.",
            &["route", "status"],
            self.http_counts(),
        );
        e.finish()
    }

    fn render_live(&self, e: &mut Exposition) {
        let Some(live) = self.live() else {
            return;
        };
        let (broker, bridge) = (live.broker.stats(), &live.bridge);
        e.gauge(
            "chatd_mqtt_connections",
            "MQTT connections open now (past CONNECT).",
            live.broker.connection_count() as f64,
        );
        e.gauge(
            "chatd_mqtt_open_sockets",
            "Sockets open on the MQTT listeners, including TLS handshakes and CONNECT in progress.",
            live.broker.open_sockets() as f64,
        );
        e.gauge(
            "chatd_online_users",
            "Users with at least one connected device that is not away.",
            live.presence.online_users() as f64,
        );
        e.counter(
            "chatd_mqtt_accepted_total",
            "Sockets accepted on the MQTT listeners.",
            broker.accepted.get(),
        );
        e.counter(
            "chatd_mqtt_connects_total",
            "MQTT connections that completed CONNECT.",
            broker.connected.get(),
        );
        e.counters(
            "chatd_mqtt_refused_total",
            "MQTT connections refused before CONNACK success, by stage.",
            "stage",
            broker.refused.snapshot(),
        );
        e.counters(
            "chatd_mqtt_disconnects_total",
            "MQTT connections ended, by reason.",
            "reason",
            broker.disconnects.snapshot(),
        );
        e.counter(
            "chatd_mqtt_publishes_received_total",
            "PUBLISH packets received from devices.",
            broker.publishes_in.get(),
        );
        e.counter(
            "chatd_mqtt_publishes_sent_total",
            "PUBLISH packets written to devices.",
            broker.publishes_out.get(),
        );
        e.counters(
            "chatd_requests_total",
            "Chat requests read from devices, by type (status: online/offline; invalid: did not parse).",
            "type",
            bridge.requests.snapshot(),
        );
        e.counters(
            "chatd_errors_total",
            "Error events sent to devices, by code.",
            "code",
            bridge.errors.snapshot(),
        );
        e.counter(
            "chatd_messages_stored_total",
            "Messages stored durably (answered with sent).",
            bridge.messages_stored.get(),
        );
        e.gauge(
            "chatd_messages_stored_per_second",
            "Messages stored per second over the last 10 seconds.",
            self.series().recent_rate(10),
        );
        histogram(
            e,
            "chatd_send_to_sent_seconds",
            "From reading a send request to publishing its sent event.",
            &bridge.send_latency,
        );
        histogram(
            e,
            "chatd_store_flush_seconds",
            "Duration of one group-commit flush of the store.",
            &bridge.flush_latency,
        );
        let shard_label: Vec<String> = (0..bridge.shard_queue.len())
            .map(|s| s.to_string())
            .collect();
        e.gauges(
            "chatd_shard_queue_depth",
            "Requests queued for, or in the current batch of, each conversation shard's worker.",
            "shard",
            shard_label
                .iter()
                .map(String::as_str)
                .zip(bridge.shard_queue.iter().map(|g| g.get() as f64)),
        );
        e.gauges(
            "chatd_fanout_queue_depth",
            "Group entries queued for, or being fanned out by, each shard's fan-out thread.",
            "shard",
            shard_label
                .iter()
                .map(String::as_str)
                .zip(bridge.fanout_queue.iter().map(|g| g.get() as f64)),
        );
    }

    fn render_push(&self, e: &mut Exposition) {
        let push = self.push();
        let stats = push.stats();
        e.gauge(
            "chatd_push_enabled",
            "1 if this node delivers push notifications; 0 means the push figures below stay 0.",
            if push.enabled() { 1.0 } else { 0.0 },
        );
        e.gauge(
            "chatd_push_queue_depth",
            "Push jobs waiting to be sent, retries included.",
            stats.queue_depth as f64,
        );
        e.gauge(
            "chatd_push_dead_letters",
            "Push jobs that ran out of retries and wait for an operator.",
            stats.dead_letters as f64,
        );
        e.counters(
            "chatd_push_outcomes_total",
            "Push jobs finished, by outcome.",
            "outcome",
            stats.outcomes,
        );
    }
}

fn histogram(e: &mut Exposition, name: &str, help: &str, h: &Histogram) {
    e.histogram(name, help, &h.snapshot());
}
