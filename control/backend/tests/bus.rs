//! The event bus, on the in-process bus and on RabbitMQ: routing,
//! redelivery, consumers that die mid-batch, and a broker restart while
//! publishing.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use buildstream_backend::bus::{self, Event, SharedBus};
use buildstream_backend::testing::{self, unique_name};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use buildstream_backend::testing::amqp_url;

async fn both() -> [(&'static str, SharedBus); 2] {
    let rabbit = bus::open(Some(&amqp_url()))
        .await
        .unwrap_or_else(|err| panic!("RabbitMQ at {} (make test starts it): {err}", amqp_url()));
    [
        ("local", bus::open(None).await.unwrap()),
        ("rabbitmq", rabbit),
    ]
}

async fn next_event(subscription: &mut bus::Subscription) -> bus::Delivery {
    tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("an event within 10 s")
        .expect("the bus is open")
}

#[tokio::test]
async fn events_reach_the_queues_whose_patterns_match_in_order() {
    for (label, bus) in both().await {
        let studios = unique_name("test.studios.");
        let everything = unique_name("test.all.");
        let mut studio_events = bus.subscribe(&studios, &["studio.*"]).await.unwrap();
        let mut all_events = bus
            .subscribe(&everything, &["studio.#", "user.*"])
            .await
            .unwrap();

        let kinds = ["studio.created", "user.registered", "studio.updated"];
        let events: Vec<Event> = kinds
            .iter()
            .map(|kind| Event::new(kind, json!({"label": label})))
            .collect();
        for event in &events {
            bus.publish(event).await.unwrap();
        }

        for expected in [&events[0], &events[2]] {
            let delivery = next_event(&mut studio_events).await;
            assert_eq!(&delivery.event, expected, "{label}");
            delivery.ack().await.unwrap();
        }
        for expected in &events {
            let delivery = next_event(&mut all_events).await;
            assert_eq!(&delivery.event, expected, "{label}");
            delivery.ack().await.unwrap();
        }
        bus.ping().await.unwrap();
        testing::delete_amqp_queues(&[&studios, &everything]).await;
    }
}

#[tokio::test]
async fn an_event_not_acknowledged_is_delivered_again() {
    for (label, bus) in both().await {
        let queue = unique_name("test.redeliver.");
        let mut subscription = bus.subscribe(&queue, &["studio.created"]).await.unwrap();
        let event = Event::new("studio.created", json!({}));
        bus.publish(&event).await.unwrap();

        // Handed back explicitly.
        let delivery = next_event(&mut subscription).await;
        delivery.requeue().await.unwrap();
        let delivery = next_event(&mut subscription).await;
        assert_eq!(delivery.event.id, event.id, "{label}");
        assert!(delivery.redelivered, "{label}");

        // Left unacknowledged by a consumer that went away.
        drop(delivery);
        drop(subscription);
        let mut again = bus.subscribe(&queue, &["studio.created"]).await.unwrap();
        let delivery = next_event(&mut again).await;
        assert_eq!(delivery.event.id, event.id, "{label}");
        delivery.ack().await.unwrap();
        testing::delete_amqp_queues(&[&queue]).await;
    }
}

/// Every event's effect, by event id: how many times it was applied.
type Effects = Arc<Mutex<HashMap<String, u32>>>;

fn apply(effects: &Effects, event: &Event) {
    *effects.lock().unwrap().entry(event.id.clone()).or_default() += 1;
}

#[tokio::test]
async fn a_consumer_killed_mid_batch_loses_and_duplicates_nothing_once_restarted() {
    for (label, bus) in both().await {
        let cache = testing::cache(label == "rabbitmq").await;
        let queue = unique_name("test.killed.");
        // The queue exists before anything is published.
        drop(bus.subscribe(&queue, &["studio.*"]).await.unwrap());
        let events: Vec<Event> = (0..100)
            .map(|i| Event::new("studio.updated", json!({ "n": i })))
            .collect();
        for event in &events {
            bus.publish(event).await.unwrap();
        }

        // The first consumer applies 40 events, then dies inside the 41st
        // with more events fetched and not acknowledged.
        let effects: Effects = Arc::default();
        let applied = effects.clone();
        let stuck = Arc::new(tokio::sync::Notify::new());
        let reached = stuck.clone();
        let first = tokio::spawn({
            let (bus, cache, queue) = (bus.clone(), cache.clone(), queue.clone());
            async move {
                bus::consume(
                    bus,
                    cache,
                    &queue,
                    &["studio.*"],
                    move |event| {
                        let applied = applied.clone();
                        let reached = reached.clone();
                        async move {
                            if applied.lock().unwrap().len() == 40 {
                                reached.notify_one();
                                std::future::pending::<()>().await;
                            }
                            apply(&applied, &event);
                            Ok(())
                        }
                    },
                    CancellationToken::new(),
                )
                .await
            }
        });
        tokio::time::timeout(Duration::from_secs(20), stuck.notified())
            .await
            .expect("the first consumer got through 40 events");
        first.abort();
        let _ = first.await;

        // One more was applied and its done-mark written, but the consumer
        // died before acknowledging it: the broker will deliver it again.
        let mut raw = bus.subscribe(&queue, &["studio.*"]).await.unwrap();
        let delivery = next_event(&mut raw).await;
        apply(&effects, &delivery.event);
        cache
            .set(
                &bus::done_key(&queue, &delivery.event.id),
                "1",
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        drop(delivery);
        drop(raw);

        // A new consumer finishes the batch.
        let applied = effects.clone();
        let stop = CancellationToken::new();
        let second = tokio::spawn({
            let (bus, cache, queue, stop) =
                (bus.clone(), cache.clone(), queue.clone(), stop.clone());
            async move {
                bus::consume(
                    bus,
                    cache,
                    &queue,
                    &["studio.*"],
                    move |event| {
                        let applied = applied.clone();
                        async move {
                            apply(&applied, &event);
                            Ok(())
                        }
                    },
                    stop,
                )
                .await
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while effects.lock().unwrap().len() < events.len() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{label}: events were lost"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Anything still to be redelivered gets its chance to show up twice.
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.cancel();
        second.await.unwrap().unwrap();

        let effects = effects.lock().unwrap().clone();
        for event in &events {
            assert_eq!(
                effects.get(&event.id),
                Some(&1),
                "{label}: event {} applied once",
                event.id
            );
        }
        testing::delete_amqp_queues(&[&queue]).await;
    }
}

/// A RabbitMQ node of the test's own, on free loopback ports, so that it
/// can be restarted without touching the machine's broker.
struct PrivateBroker {
    node: String,
    url: String,
    dir: std::path::PathBuf,
}

impl PrivateBroker {
    fn start() -> Self {
        let port = free_port();
        let dist_port = free_port();
        let node = format!("{}@localhost", unique_name("bstest"));
        let dir = std::env::temp_dir().join(unique_name("bs-rabbit-"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("plugins"), "[].\n").unwrap();
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\nloopback_users = none\n"),
        )
        .unwrap();
        // The broker may drop to its own user: the directory must be its.
        let _ = Command::new("chmod")
            .args(["-R", "0777"])
            .arg(&dir)
            .status();
        let broker = Self {
            url: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
            node,
            dir,
        };
        let status = broker
            .command("rabbitmq-server")
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .arg("-detached")
            .status()
            .expect("rabbitmq-server (make test installs it)");
        assert!(status.success());
        broker.wait_listening(port);
        broker
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq.conf"))
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.dir.join("plugins"))
            .env("RABBITMQ_PID_FILE", self.dir.join("pid"));
        command
    }

    fn ctl(&self, args: &[&str]) {
        let status = self
            .command("rabbitmqctl")
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "rabbitmqctl {args:?}");
    }

    fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap()
    }

    fn wait_listening(&self, port: u16) {
        for _ in 0..120 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("the private RabbitMQ never listened on {port}");
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self
            .command("rabbitmqctl")
            .arg("-n")
            .arg(&self.node)
            .arg("stop")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_while_publishing_loses_nothing_acknowledged() {
    let broker = PrivateBroker::start();
    let bus = bus::open(Some(&broker.url)).await.unwrap();
    let queue = unique_name("test.restart.");
    drop(bus.subscribe(&queue, &["studio.*"]).await.unwrap());

    let confirmed: Arc<Mutex<Vec<String>>> = Arc::default();
    let refused = Arc::new(Mutex::new(0usize));
    let stop = CancellationToken::new();
    let publisher = tokio::spawn({
        let (bus, confirmed, refused, stop) = (
            bus.clone(),
            confirmed.clone(),
            refused.clone(),
            stop.clone(),
        );
        async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                let event = Event::new("studio.updated", json!({ "n": n }));
                n += 1;
                match bus.publish(&event).await {
                    Ok(()) => confirmed.lock().unwrap().push(event.id),
                    Err(_) => *refused.lock().unwrap() += 1,
                }
            }
        }
    });

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = confirmed.lock().unwrap().len();
    let ctl = |args: &'static [&'static str]| {
        let broker = &broker;
        tokio::task::block_in_place(|| broker.ctl(args))
    };
    ctl(&["stop_app"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    ctl(&["start_app"]);
    broker.wait_listening(broker.port());
    // Publishing resumes on a new connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let resumed_from = confirmed.lock().unwrap().len();
    while confirmed.lock().unwrap().len() < resumed_from + 50 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "publishing never resumed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    publisher.await.unwrap();

    let confirmed = confirmed.lock().unwrap().clone();
    eprintln!(
        "{} events confirmed ({before} before the restart), {} refused while it was down",
        confirmed.len(),
        refused.lock().unwrap()
    );
    let mut subscription = bus.subscribe(&queue, &["studio.*"]).await.unwrap();
    let mut stored = std::collections::HashSet::new();
    while let Ok(Some(delivery)) =
        tokio::time::timeout(Duration::from_secs(3), subscription.next()).await
    {
        stored.insert(delivery.event.id.clone());
        delivery.ack().await.unwrap();
    }
    let lost: Vec<&String> = confirmed
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} confirmed events lost: {lost:?}",
        lost.len()
    );
}

#[tokio::test]
async fn a_durable_queue_tells_how_many_events_wait_in_it() {
    for (label, bus) in both().await {
        let queue = unique_name("test.depth.");
        drop(bus.subscribe(&queue, &["depth.*"]).await.unwrap());
        for i in 0..5 {
            bus.publish(&Event::new("depth.counted", json!({ "i": i })))
                .await
                .unwrap();
        }
        // The broker counts what it has routed a moment later.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while bus.depth(&queue).await.unwrap() != Some(5) {
            assert!(
                std::time::Instant::now() < deadline,
                "{label}: depth {:?}",
                bus.depth(&queue).await
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(
            bus.depth(&unique_name("test.no-such-queue."))
                .await
                .unwrap(),
            None,
            "{label}"
        );
        testing::delete_amqp_queues(&[&queue]).await;
    }
}
