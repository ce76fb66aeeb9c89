//! The studio search contract, on the embedded tantivy index.

use buildstream_backend::search::{Sort, StudioDoc, StudioIndex, StudioQuery, TantivyIndex};

fn studio(
    id: &str,
    owner: &str,
    name: &str,
    description: &str,
    tags: &[&str],
    at: u64,
) -> StudioDoc {
    StudioDoc {
        studio_id: id.to_owned(),
        owner_id: owner.to_owned(),
        name: name.to_owned(),
        description: description.to_owned(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        live: false,
        created_at_ms: at,
    }
}

async fn filled() -> TantivyIndex {
    let index = TantivyIndex::in_memory().unwrap();
    for doc in [
        studio(
            "st_1",
            "u_a",
            "Morning Show",
            "news and coffee",
            &["news"],
            1_000,
        ),
        studio(
            "st_2",
            "u_a",
            "Evening Podcast",
            "long talks about music",
            &["music", "talk"],
            2_000,
        ),
        studio(
            "st_3",
            "u_b",
            "Guitar Lessons",
            "learn the guitar live",
            &["music"],
            3_000,
        ),
        studio(
            "st_4",
            "u_a",
            "Weekly Standup",
            "the team's morning meeting",
            &[],
            4_000,
        ),
        studio("st_5", "u_b", "Night Show", "late music", &["music"], 5_000),
    ] {
        index.upsert(doc).await.unwrap();
    }
    index
}

fn ids(page: &buildstream_backend::search::SearchPage) -> Vec<&str> {
    page.hits.iter().map(|h| h.studio_id.as_str()).collect()
}

fn query(text: &str) -> StudioQuery {
    StudioQuery {
        text: Some(text.to_owned()),
        limit: 10,
        ..StudioQuery::default()
    }
}

#[tokio::test]
async fn words_are_found_despite_typos_and_name_beats_description() {
    let index = filled().await;
    let page = index.search(&query("mornign")).await.unwrap();
    assert_eq!(ids(&page), ["st_1", "st_4"], "the name match first");
    assert_eq!(page.total, 2);

    assert_eq!(
        ids(&index.search(&query("podcsat")).await.unwrap()),
        ["st_2"]
    );
    assert_eq!(
        ids(&index.search(&query("guittar lesons")).await.unwrap()),
        ["st_3"]
    );
    // The start of a word, as someone still typing it.
    assert_eq!(ids(&index.search(&query("stand")).await.unwrap()), ["st_4"]);
    // Every word must match.
    assert!(index
        .search(&query("morning guitar"))
        .await
        .unwrap()
        .hits
        .is_empty());
    // Short words must be right.
    assert!(index.search(&query("nwe")).await.unwrap().hits.is_empty());
}

#[tokio::test]
async fn filters_sorting_and_pages() {
    let index = filled().await;
    let all = |q: StudioQuery| StudioQuery { limit: 10, ..q };

    let mine = index
        .search(&all(StudioQuery {
            owner: Some("u_a".into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(
        ids(&mine),
        ["st_4", "st_2", "st_1"],
        "newest first without text"
    );

    let music = index
        .search(&all(StudioQuery {
            tags: vec!["Music".into()],
            sort: Sort::Oldest,
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(ids(&music), ["st_2", "st_3", "st_5"]);

    let range = index
        .search(&all(StudioQuery {
            created_from_ms: Some(2_000),
            created_until_ms: Some(4_000),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(ids(&range), ["st_3", "st_2"]);

    let second_page = index
        .search(&StudioQuery {
            offset: 2,
            limit: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&second_page), ["st_3", "st_2"]);
    assert_eq!(second_page.total, 5);
}

#[tokio::test]
async fn live_state_updates_and_removals_follow() {
    let index = filled().await;
    index.set_live("st_3", true).await.unwrap();
    let live = index
        .search(&StudioQuery {
            live: Some(true),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&live), ["st_3"]);
    assert!(live.hits[0].live);

    // A rename keeps the live state.
    index
        .upsert(studio(
            "st_3",
            "u_b",
            "Bass Lessons",
            "learn the bass live",
            &["music"],
            3_000,
        ))
        .await
        .unwrap();
    let page = index.search(&query("bass")).await.unwrap();
    assert_eq!(ids(&page), ["st_3"]);
    assert!(page.hits[0].live);
    assert!(index
        .search(&query("guitar"))
        .await
        .unwrap()
        .hits
        .is_empty());

    index.remove("st_3").await.unwrap();
    assert!(index.search(&query("bass")).await.unwrap().hits.is_empty());
    // Unknown studios are no error.
    index.set_live("st_nope", true).await.unwrap();
    index.remove("st_nope").await.unwrap();
}

#[tokio::test]
async fn an_index_in_a_directory_survives_reopening() {
    let dir = std::env::temp_dir().join(buildstream_backend::testing::unique_name("bs-index-"));
    {
        let index = TantivyIndex::in_dir(&dir).unwrap();
        index
            .upsert(studio("st_9", "u_a", "Kept Studio", "", &[], 9))
            .await
            .unwrap();
    }
    let index = TantivyIndex::in_dir(&dir).unwrap();
    assert_eq!(ids(&index.search(&query("kept")).await.unwrap()), ["st_9"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_rebuild_replaces_everything_with_the_live_states_given() {
    let index = filled().await;
    index.set_live("st_1", true).await.unwrap();
    let mut kept = studio("st_2", "u_a", "Evening Podcast", "", &[], 2_000);
    kept.live = true;
    index
        .replace_all(vec![
            kept,
            studio("st_6", "u_a", "New Studio", "", &[], 6_000),
        ])
        .await
        .unwrap();
    let all = index
        .search(&StudioQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&all), ["st_6", "st_2"]);
    let live = index
        .search(&StudioQuery {
            live: Some(true),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(&live), ["st_2"]);
}
