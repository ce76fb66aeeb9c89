//! The cache contract, checked on the in-memory cache and on Redis.

use std::time::Duration;

use buildstream_backend::testing;
use buildstream_backend::SharedCache;

async fn both() -> [(&'static str, SharedCache); 2] {
    [
        ("memory", testing::cache(false).await),
        ("redis", testing::cache(true).await),
    ]
}

#[tokio::test]
async fn values_are_stored_replaced_deleted_and_expire() {
    for (label, cache) in both().await {
        assert_eq!(cache.get("a").await.unwrap(), None, "{label}");
        cache.set("a", "1", Duration::from_secs(60)).await.unwrap();
        cache.set("a", "2", Duration::from_secs(60)).await.unwrap();
        assert_eq!(
            cache.get("a").await.unwrap().as_deref(),
            Some("2"),
            "{label}"
        );
        cache.delete("a").await.unwrap();
        assert_eq!(cache.get("a").await.unwrap(), None, "{label}");

        cache
            .set("short", "x", Duration::from_millis(50))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(cache.get("short").await.unwrap(), None, "{label}: expired");
        cache.ping().await.unwrap();
    }
}

#[tokio::test]
async fn of_racing_set_if_absent_exactly_one_wins() {
    for (label, cache) in both().await {
        let racers = (0..16).map(|i| {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .set_if_absent("once", &i.to_string(), Duration::from_secs(60))
                    .await
                    .unwrap()
            })
        });
        let mut winners = 0;
        for racer in racers {
            winners += usize::from(racer.await.unwrap());
        }
        assert_eq!(winners, 1, "{label}");
        assert!(cache.get("once").await.unwrap().is_some(), "{label}");
    }
}

#[tokio::test]
async fn counters_count_within_their_window_and_then_restart() {
    for (label, cache) in both().await {
        let window = Duration::from_millis(300);
        for expected in 1..=5 {
            assert_eq!(
                cache.increment("hits", window).await.unwrap(),
                expected,
                "{label}"
            );
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            cache.increment("hits", window).await.unwrap(),
            1,
            "{label}: new window"
        );
    }
}

#[tokio::test]
async fn maps_keep_fields_apart_and_expire_whole() {
    for (label, cache) in both().await {
        let ttl = Duration::from_secs(60);
        cache.map_set("room", "alice", "a", ttl).await.unwrap();
        cache.map_set("room", "bob", "b", ttl).await.unwrap();
        cache.map_set("room", "alice", "a2", ttl).await.unwrap();
        let all = cache.map_all("room").await.unwrap();
        assert_eq!(all.len(), 2, "{label}");
        assert_eq!(all["alice"], "a2", "{label}");
        cache.map_delete("room", "bob").await.unwrap();
        assert_eq!(cache.map_all("room").await.unwrap().len(), 1, "{label}");
        assert!(
            cache.map_all("nothing").await.unwrap().is_empty(),
            "{label}"
        );

        cache
            .map_set("brief", "x", "1", Duration::from_millis(50))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(
            cache.map_all("brief").await.unwrap().is_empty(),
            "{label}: expired"
        );
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_a_hang() {
    // Port 1 on loopback: nothing listens there.
    let opened = buildstream_backend::cache::open(Some("redis://127.0.0.1:1"), "x:").await;
    assert!(opened.is_err());
}
