//! Domain events between services: `user.registered`, `studio.created`,
//! `broadcast.started` and the like, published to a topic exchange and
//! consumed from durable queues. RabbitMQ in production; an in-process bus
//! for one process.
//!
//! Delivery is at least once. A publish returns only once the broker has
//! confirmed the event is stored, retrying across reconnections until its
//! deadline. A consumer acknowledges an event after its work is done, so an
//! event whose consumer died mid-way is delivered again; [`consume`] skips
//! events it has already finished, by id, so that redelivery does no work
//! twice.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::SharedCache;

/// The exchange every event goes through.
pub const EXCHANGE: &str = "buildstream.events";

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id; consumers deduplicate by it.
    pub id: String,
    /// What happened, dotted: `studio.created`. The routing key.
    pub kind: String,
    /// When, milliseconds since the epoch.
    pub occurred_at_ms: u64,
    /// W3C trace context of the request that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The event's own fields.
    pub data: serde_json::Value,
}

impl Event {
    /// A new event of `kind` happening now.
    pub fn new(kind: &str, data: serde_json::Value) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            kind: kind.to_owned(),
            occurred_at_ms: now_ms(),
            traceparent: None,
            data,
        }
    }

    /// The same event, carrying a trace context.
    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Self {
        self.traceparent = traceparent;
        self
    }
}

/// A bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// RabbitMQ refused or cannot be reached.
    #[error("amqp: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker did not confirm within the publish deadline.
    #[error("the broker did not confirm the event within {0:?}")]
    Unconfirmed(Duration),
    /// The broker refused to store the event.
    #[error("the broker refused the event")]
    Nacked,
    /// The bus is shutting down.
    #[error("bus closed")]
    Closed,
}

/// What services ask of a bus.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Publishes `event`; returns once the bus holds it durably.
    async fn publish(&self, event: &Event) -> Result<(), BusError>;

    /// Consumes the durable queue `queue`, bound to the kinds matching
    /// `patterns` (`studio.*`, `broadcast.#`). Events published while
    /// nobody consumes wait in the queue once it exists. On RabbitMQ, of
    /// several subscribers to one queue (instances of one service), one at
    /// a time receives its events, in order, and another takes over when
    /// it goes; in process they take turns.
    async fn subscribe(&self, queue: &str, patterns: &[&str]) -> Result<Subscription, BusError>;

    /// Consumes a queue of this subscription's own, bound to `patterns`,
    /// that lives only as long as the subscription: for a consumer that
    /// keeps state of its own in the process (an embedded index) and must
    /// see every event, whatever other instances see.
    async fn subscribe_own(&self, patterns: &[&str]) -> Result<Subscription, BusError>;

    /// Whether the bus can take events now (readiness).
    async fn ping(&self) -> Result<(), BusError>;

    /// How many events wait in the durable queue `queue`, not yet
    /// delivered; `None` when there is no such queue.
    async fn depth(&self, queue: &str) -> Result<Option<u64>, BusError>;
}

/// A shared handle to whichever bus is configured.
pub type SharedBus = Arc<dyn Bus>;

/// Connects to the RabbitMQ at `url` (`amqp://user:pass@host:5672/%2f`), or
/// makes an in-process bus when there is none.
pub async fn open(url: Option<&str>) -> Result<SharedBus, BusError> {
    match url {
        Some(url) => Ok(Arc::new(AmqpBus::connect(url).await?)),
        None => Ok(Arc::new(LocalBus::default())),
    }
}

/// Events from one queue.
pub struct Subscription {
    source: Source,
}

enum Source {
    Local(Arc<LocalQueue>),
    Amqp {
        deliveries: mpsc::Receiver<Delivery>,
        stop: CancellationToken,
    },
}

impl Subscription {
    /// The next event; `None` once the bus has closed.
    pub async fn next(&mut self) -> Option<Delivery> {
        match &mut self.source {
            Source::Local(queue) => Some(queue.next().await),
            Source::Amqp { deliveries, .. } => deliveries.recv().await,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Source::Amqp { stop, .. } = &self.source {
            stop.cancel();
        }
    }
}

/// One event handed to a consumer, to acknowledge when its work is done.
/// Dropped unacknowledged, it is delivered again.
pub struct Delivery {
    /// The event.
    pub event: Event,
    /// Whether it was delivered before (and not acknowledged).
    pub redelivered: bool,
    ack: Option<Acker>,
}

enum Acker {
    Local(Arc<LocalQueue>, u64),
    Amqp(lapin::Acker),
}

impl Delivery {
    /// The work is done: the event leaves the queue.
    pub async fn ack(mut self) -> Result<(), BusError> {
        match self.ack.take() {
            Some(Acker::Local(queue, tag)) => queue.ack(tag),
            Some(Acker::Amqp(acker)) => {
                acker.ack(BasicAckOptions::default()).await?;
            }
            None => {}
        }
        Ok(())
    }

    /// The work failed: the event goes back to the queue.
    pub async fn requeue(mut self) -> Result<(), BusError> {
        match self.ack.take() {
            Some(Acker::Local(queue, tag)) => queue.requeue(tag),
            Some(Acker::Amqp(acker)) => {
                let options = BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                };
                acker.nack(options).await?;
            }
            None => {}
        }
        Ok(())
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        // RabbitMQ redelivers what a closed channel left unacknowledged;
        // the in-process queue has to be told.
        if let Some(Acker::Local(queue, tag)) = self.ack.take() {
            queue.requeue(tag);
        }
    }
}

/// Consumes `queue` with `handler` until `cancel` fires: each event once,
/// acknowledged after `handler` succeeds, retried after a pause when it
/// fails. Events finished before (by id, remembered in `cache` for a week)
/// are acknowledged without running `handler` again.
pub async fn consume<F, Fut>(
    bus: SharedBus,
    cache: SharedCache,
    queue: &str,
    patterns: &[&str],
    handler: F,
    cancel: CancellationToken,
) -> Result<(), BusError>
where
    F: Fn(Event) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    const REMEMBER: Duration = Duration::from_secs(7 * 24 * 3600);
    let mut subscription = bus.subscribe(queue, patterns).await?;
    let mut depth_clock = tokio::time::interval(DEPTH_EVERY);
    depth_clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let delivery = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = depth_clock.tick() => {
                if let Ok(Some(depth)) = bus.depth(queue).await {
                    metrics::gauge!("events_queue_depth", "queue" => queue.to_owned())
                        .set(depth as f64);
                }
                continue;
            }
            delivery = subscription.next() => match delivery {
                Some(delivery) => delivery,
                None => return Err(BusError::Closed),
            },
        };
        let done_key = done_key(queue, &delivery.event.id);
        match cache.get(&done_key).await {
            Ok(Some(_)) => {
                tracing::debug!(%queue, event = %delivery.event.id, "event already handled");
                delivery.ack().await?;
                continue;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(%queue, error = %err, "cannot check for duplicates; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                delivery.requeue().await?;
                continue;
            }
        }
        match handler(delivery.event.clone()).await {
            Ok(()) => {
                if let Err(err) = cache.set(&done_key, "1", REMEMBER).await {
                    tracing::warn!(%queue, error = %err, "cannot remember a handled event");
                }
                delivery.ack().await?;
            }
            Err(reason) => {
                tracing::warn!(%queue, event = %delivery.event.id, kind = %delivery.event.kind,
                    %reason, "event handling failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                delivery.requeue().await?;
            }
        }
    }
}

/// How often a consumer reports its queue's depth
/// (`events_queue_depth{queue}`).
const DEPTH_EVERY: Duration = Duration::from_secs(10);

/// The cache key that says `queue`'s consumer finished event `id`.
pub fn done_key(queue: &str, id: &str) -> String {
    format!("event-done:{queue}:{id}")
}

/// Publishes events in the background, in order, so that a request that
/// caused one does not wait on the broker: an event is handed over at once
/// and published (retried until the broker confirms it) by a task of its
/// own.
// TODO: events wait in memory until confirmed, so a process that dies with
// the broker down loses them; a transactional outbox table written with the
// change would keep them.
#[derive(Clone)]
pub struct EventSender {
    queue: mpsc::Sender<Event>,
}

/// Events waiting for the broker at most; past that, new ones are dropped
/// (and logged) rather than taking the process's memory.
const SEND_QUEUE: usize = 10_000;

impl EventSender {
    /// A sender publishing to `bus` until every clone is dropped.
    pub fn start(bus: SharedBus) -> Self {
        let (queue, mut waiting) = mpsc::channel::<Event>(SEND_QUEUE);
        tokio::spawn(async move {
            while let Some(event) = waiting.recv().await {
                let mut pause = Duration::from_secs(1);
                while let Err(err) = bus.publish(&event).await {
                    tracing::warn!(event = %event.id, kind = %event.kind, error = %err,
                        "event not published yet; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
                metrics::gauge!("events_waiting").decrement(1.0);
                metrics::counter!("events_published_total", "kind" => event.kind.clone())
                    .increment(1);
            }
        });
        Self { queue }
    }

    /// Hands `event` over for publishing.
    pub fn send(&self, event: Event) {
        match self.queue.try_send(event) {
            Ok(()) => metrics::gauge!("events_waiting").increment(1.0),
            Err(err) => tracing::error!(error = %err, "event queue full; event dropped"),
        }
    }
}

/// Whether `kind` matches a topic `pattern`: words between dots, `*` one
/// word, `#` any number of them.
pub fn topic_matches(pattern: &str, kind: &str) -> bool {
    fn matches(pattern: &[&str], words: &[&str]) -> bool {
        match (pattern.split_first(), words.split_first()) {
            (None, None) => true,
            (Some((&"#", rest)), _) => {
                matches(rest, words) || (!words.is_empty() && matches(pattern, &words[1..]))
            }
            (Some((&"*", rest)), Some((_, words))) => matches(rest, words),
            (Some((p, rest)), Some((w, words))) => p == w && matches(rest, words),
            _ => false,
        }
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let words: Vec<&str> = kind.split('.').collect();
    matches(&pattern, &words)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

// ---- in process -------------------------------------------------------

/// The bus inside one process: queues in memory, routed like a topic
/// exchange. For `buildstream dev`, where every service shares the process.
#[derive(Default)]
pub struct LocalBus {
    queues: Mutex<HashMap<String, Arc<LocalQueue>>>,
}

/// Events a local queue holds at most; past that the oldest are dropped
/// (and logged): a consumer that stopped must not take the process's
/// memory with it.
const LOCAL_QUEUE_LIMIT: usize = 100_000;

struct LocalQueue {
    name: String,
    patterns: Mutex<Vec<String>>,
    state: Mutex<LocalState>,
    ready: Notify,
}

#[derive(Default)]
struct LocalState {
    waiting: VecDeque<(Event, bool)>,
    unacked: HashMap<u64, Event>,
    next_tag: u64,
}

impl LocalQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, LocalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, event: Event) {
        let mut state = self.lock();
        if state.waiting.len() >= LOCAL_QUEUE_LIMIT {
            state.waiting.pop_front();
            tracing::error!(queue = %self.name, "queue full; oldest event dropped");
        }
        state.waiting.push_back((event, false));
        drop(state);
        self.ready.notify_one();
    }

    async fn next(self: &Arc<Self>) -> Delivery {
        loop {
            let notified = self.ready.notified();
            {
                let mut state = self.lock();
                if let Some((event, redelivered)) = state.waiting.pop_front() {
                    state.next_tag += 1;
                    let tag = state.next_tag;
                    state.unacked.insert(tag, event.clone());
                    return Delivery {
                        event,
                        redelivered,
                        ack: Some(Acker::Local(self.clone(), tag)),
                    };
                }
            }
            notified.await;
        }
    }

    fn ack(&self, tag: u64) {
        self.lock().unacked.remove(&tag);
    }

    fn requeue(&self, tag: u64) {
        let mut state = self.lock();
        if let Some(event) = state.unacked.remove(&tag) {
            state.waiting.push_front((event, true));
            drop(state);
            self.ready.notify_one();
        }
    }
}

#[async_trait]
impl Bus for LocalBus {
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        let queues: Vec<Arc<LocalQueue>> = self
            .queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for queue in queues {
            let routed = queue
                .patterns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|pattern| topic_matches(pattern, &event.kind));
            if routed {
                queue.push(event.clone());
            }
        }
        Ok(())
    }

    async fn subscribe(&self, queue: &str, patterns: &[&str]) -> Result<Subscription, BusError> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let queue = queues
            .entry(queue.to_owned())
            .or_insert_with(|| {
                Arc::new(LocalQueue {
                    name: queue.to_owned(),
                    patterns: Mutex::new(Vec::new()),
                    state: Mutex::new(LocalState::default()),
                    ready: Notify::new(),
                })
            })
            .clone();
        let mut bound = queue.patterns.lock().unwrap_or_else(|p| p.into_inner());
        for pattern in patterns {
            if !bound.iter().any(|p| p == pattern) {
                bound.push((*pattern).to_owned());
            }
        }
        drop(bound);
        Ok(Subscription {
            source: Source::Local(queue),
        })
    }

    async fn subscribe_own(&self, patterns: &[&str]) -> Result<Subscription, BusError> {
        let name = format!("own.{}", uuid::Uuid::new_v4());
        self.subscribe(&name, patterns).await
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }

    async fn depth(&self, queue: &str) -> Result<Option<u64>, BusError> {
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        Ok(queues.get(queue).map(|q| {
            let state = q.state.lock().unwrap_or_else(|p| p.into_inner());
            state.waiting.len() as u64
        }))
    }
}

// ---- RabbitMQ ---------------------------------------------------------

/// RabbitMQ through lapin: one connection with a confirming channel for
/// publishing, re-made after a failure; a connection per subscription,
/// re-made (exchange, queue and bindings declared again) until the
/// subscription is dropped.
pub struct AmqpBus {
    url: String,
    publisher: tokio::sync::Mutex<Option<Publisher>>,
}

#[derive(Clone)]
struct Publisher {
    // Kept so that the channel's connection lives as long as it is used.
    connection: Arc<Connection>,
    channel: Channel,
    generation: u64,
}

/// How long a publish keeps trying, reconnecting included.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(15);
/// How many unacknowledged events a consumer holds at once.
const PREFETCH: u16 = 32;

impl AmqpBus {
    /// Connects to the broker at `url` and declares the exchange.
    pub async fn connect(url: &str) -> Result<Self, BusError> {
        let bus = Self {
            url: url.to_owned(),
            publisher: tokio::sync::Mutex::new(None),
        };
        bus.publisher().await?;
        Ok(bus)
    }

    async fn publisher(&self) -> Result<Publisher, BusError> {
        let mut current = self.publisher.lock().await;
        if let Some(publisher) = current.as_ref() {
            if publisher.channel.status().connected() {
                return Ok(publisher.clone());
            }
        }
        let generation = current.as_ref().map_or(0, |p| p.generation + 1);
        let connection = Connection::connect(&self.url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        declare_exchange(&channel).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let publisher = Publisher {
            connection: Arc::new(connection),
            channel,
            generation,
        };
        *current = Some(publisher.clone());
        Ok(publisher)
    }

    async fn forget(&self, generation: u64) {
        let mut current = self.publisher.lock().await;
        if current.as_ref().is_some_and(|p| p.generation == generation) {
            *current = None;
        }
    }

    async fn publish_once(&self, event: &Event, payload: &[u8]) -> Result<(), BusError> {
        let publisher = self.publisher().await?;
        let mut headers = FieldTable::default();
        if let Some(traceparent) = &event.traceparent {
            headers.insert(
                ShortString::from("traceparent"),
                AMQPValue::LongString(LongString::from(traceparent.as_bytes())),
            );
        }
        let properties = BasicProperties::default()
            .with_message_id(ShortString::from(event.id.as_str()))
            .with_content_type(ShortString::from("application/json"))
            .with_delivery_mode(2)
            .with_headers(headers);
        let sent = async {
            let confirm = publisher
                .channel
                .basic_publish(
                    ShortString::from(EXCHANGE),
                    ShortString::from(event.kind.as_str()),
                    BasicPublishOptions::default(),
                    payload,
                    properties,
                )
                .await?;
            confirm.await
        }
        .await;
        match sent {
            Ok(confirmation) if confirmation.is_nack() => Err(BusError::Nacked),
            Ok(_) => Ok(()),
            Err(err) => {
                self.forget(publisher.generation).await;
                Err(err.into())
            }
        }
    }
}

impl AmqpBus {
    async fn start_consumer(
        &self,
        queue: String,
        patterns: &[&str],
        own: bool,
    ) -> Result<Subscription, BusError> {
        let (sender, deliveries) = mpsc::channel(usize::from(PREFETCH));
        let stop = CancellationToken::new();
        let consumer = AmqpConsumer {
            url: self.url.clone(),
            queue,
            patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
            own,
        };
        // The first connection is made here, so that a wrong URL or a
        // missing broker is an error to the caller, not a retry loop.
        let first = consumer.connect().await?;
        tokio::spawn(consumer.run(first, sender, stop.clone()));
        Ok(Subscription {
            source: Source::Amqp { deliveries, stop },
        })
    }
}

async fn declare_exchange(channel: &Channel) -> Result<(), lapin::Error> {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            ShortString::from(EXCHANGE),
            ExchangeKind::Topic,
            options,
            FieldTable::default(),
        )
        .await
}

#[async_trait]
impl Bus for AmqpBus {
    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        let payload = serde_json::to_vec(event).map_err(|_| BusError::Nacked)?;
        let deadline = tokio::time::Instant::now() + PUBLISH_DEADLINE;
        let mut pause = Duration::from_millis(100);
        loop {
            let attempt = tokio::time::timeout_at(deadline, self.publish_once(event, &payload));
            match attempt.await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(err)) => {
                    tracing::debug!(error = %err, event = %event.id, "publish failed; retrying");
                }
                Err(_) => return Err(BusError::Unconfirmed(PUBLISH_DEADLINE)),
            }
            if tokio::time::Instant::now() + pause >= deadline {
                return Err(BusError::Unconfirmed(PUBLISH_DEADLINE));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    async fn subscribe(&self, queue: &str, patterns: &[&str]) -> Result<Subscription, BusError> {
        self.start_consumer(queue.to_owned(), patterns, false).await
    }

    async fn subscribe_own(&self, patterns: &[&str]) -> Result<Subscription, BusError> {
        let queue = format!("own.{}", uuid::Uuid::new_v4());
        self.start_consumer(queue, patterns, true).await
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.publisher().await.map(|_| ())
    }

    async fn depth(&self, queue: &str) -> Result<Option<u64>, BusError> {
        let publisher = self.publisher().await?;
        // A passive declare, on a channel of its own: the broker closes the
        // channel when the queue is not there.
        let channel = publisher.connection.create_channel().await?;
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = channel
            .queue_declare(ShortString::from(queue), options, FieldTable::default())
            .await;
        let _ = channel.close(200, ShortString::from("done")).await;
        Ok(declared.ok().map(|q| u64::from(q.message_count())))
    }
}

struct AmqpConsumer {
    url: String,
    queue: String,
    patterns: Vec<String>,
    /// A queue of this consumer's own: deleted by the broker when its
    /// connection closes.
    own: bool,
}

impl AmqpConsumer {
    async fn connect(&self) -> Result<(Connection, lapin::Consumer), BusError> {
        let connection = Connection::connect(&self.url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        declare_exchange(&channel).await?;
        let durable = QueueDeclareOptions {
            durable: !self.own,
            exclusive: self.own,
            auto_delete: self.own,
            ..QueueDeclareOptions::default()
        };
        // A durable queue is consumed by one consumer at a time, the others
        // waiting to take over: events about one thing are handled in the
        // order they happened, whichever instance handles them.
        let mut arguments = FieldTable::default();
        if !self.own {
            arguments.insert(
                ShortString::from("x-single-active-consumer"),
                AMQPValue::Boolean(true),
            );
        }
        channel
            .queue_declare(ShortString::from(self.queue.as_str()), durable, arguments)
            .await?;
        for pattern in &self.patterns {
            channel
                .queue_bind(
                    ShortString::from(self.queue.as_str()),
                    ShortString::from(EXCHANGE),
                    ShortString::from(pattern.as_str()),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                ShortString::from(self.queue.as_str()),
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok((connection, consumer))
    }

    /// Hands deliveries over until stopped, reconnecting after failures.
    async fn run(
        self,
        first: (Connection, lapin::Consumer),
        sender: mpsc::Sender<Delivery>,
        stop: CancellationToken,
    ) {
        let mut session = Some(first);
        let mut pause = Duration::from_millis(200);
        loop {
            if let Some((connection, mut consumer)) = session.take() {
                pause = Duration::from_millis(200);
                loop {
                    let next = tokio::select! {
                        _ = stop.cancelled() => {
                            let _ = connection.close(200, ShortString::from("done")).await;
                            return;
                        }
                        next = consumer.next() => next,
                    };
                    let delivery = match next {
                        Some(Ok(delivery)) => delivery,
                        Some(Err(err)) => {
                            tracing::warn!(queue = %self.queue, error = %err, "consumer lost its broker; reconnecting");
                            break;
                        }
                        None => break,
                    };
                    let Ok(event) = serde_json::from_slice::<Event>(&delivery.data) else {
                        // Garbage stays garbage however often it is
                        // delivered: out of the queue, noted.
                        tracing::warn!(queue = %self.queue, "undecodable event dropped");
                        let options = BasicNackOptions {
                            requeue: false,
                            ..BasicNackOptions::default()
                        };
                        let _ = delivery.acker.nack(options).await;
                        continue;
                    };
                    let handed = Delivery {
                        event,
                        redelivered: delivery.redelivered,
                        ack: Some(Acker::Amqp(delivery.acker)),
                    };
                    if sender.send(handed).await.is_err() {
                        let _ = connection.close(200, ShortString::from("done")).await;
                        return;
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(5));
            match self.connect().await {
                Ok(connected) => {
                    tracing::info!(queue = %self.queue, "consumer reconnected");
                    session = Some(connected);
                }
                Err(err) => {
                    tracing::debug!(queue = %self.queue, error = %err, "consumer reconnect failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_patterns_match_words() {
        assert!(topic_matches("studio.created", "studio.created"));
        assert!(topic_matches("studio.*", "studio.updated"));
        assert!(!topic_matches("studio.*", "studio.a.b"));
        assert!(topic_matches("studio.#", "studio.a.b"));
        assert!(topic_matches("studio.#", "studio"));
        assert!(topic_matches("#", "anything.at.all"));
        assert!(topic_matches("*.started", "broadcast.started"));
        assert!(!topic_matches("user.*", "studio.created"));
    }
}
