//! Studio search: full text on name and description with typo tolerance,
//! filters, sorting and pages. Tantivy embedded, in memory or in a
//! directory; Elasticsearch for deployments of several instances.
//!
//! [`ElasticsearchIndex`] (`search/elastic.rs`) is tested against recorded
//! request/response pairs, as no Elasticsearch server can run where the
//! tests run.
//!
//! The index is fed by studio events ([`StudioIndex::upsert`] from
//! `studio.created` and `studio.updated`, [`StudioIndex::set_live`] from
//! `broadcast.*`), so it follows the studios with the events' delay.

mod elastic;

pub use elastic::ElasticsearchIndex;

use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, Value, FAST, INDEXED, STORED, STRING, TEXT,
};
use tantivy::{Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term};

/// A studio as the index holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StudioDoc {
    /// Studio id.
    pub studio_id: String,
    /// Its owner.
    pub owner_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Tags, lowercase.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Live now.
    #[serde(default)]
    pub live: bool,
    /// Creation time, milliseconds since the epoch.
    pub created_at_ms: u64,
}

/// How results are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Best match first (newest first without a text query).
    #[default]
    Relevance,
    /// Newest first.
    Newest,
    /// Oldest first.
    Oldest,
}

/// A search.
#[derive(Debug, Clone, Default)]
pub struct StudioQuery {
    /// Words to find in name or description, each forgiving a typo or two.
    pub text: Option<String>,
    /// Only this owner's studios.
    pub owner: Option<String>,
    /// Only live (or only not live) studios.
    pub live: Option<bool>,
    /// Only studios carrying every one of these tags.
    pub tags: Vec<String>,
    /// Created at or after, milliseconds since the epoch.
    pub created_from_ms: Option<u64>,
    /// Created before, milliseconds since the epoch.
    pub created_until_ms: Option<u64>,
    /// Order.
    pub sort: Sort,
    /// Results skipped.
    pub offset: usize,
    /// Results returned at most.
    pub limit: usize,
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SearchPage {
    /// Studios matching, over all pages.
    pub total: u64,
    /// This page.
    pub hits: Vec<StudioDoc>,
}

/// A search backend failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// Tantivy failed.
    #[error("index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    /// The index directory could not be opened.
    #[error("index directory: {0}")]
    Directory(String),
    /// Elasticsearch refused or cannot be reached.
    #[error("elasticsearch: {0}")]
    Elasticsearch(String),
    /// The backend's settings are wrong (an unreadable URL).
    #[error("search settings: {0}")]
    Config(String),
}

/// What the studio service asks of its search index.
#[async_trait]
pub trait StudioIndex: Send + Sync {
    /// Gets the index ready to use (creating it where it is missing). True
    /// when it starts empty and so must be filled from the database.
    async fn prepare(&self) -> Result<bool, SearchError>;
    /// Adds or replaces a studio (keeping whether it is live).
    async fn upsert(&self, doc: StudioDoc) -> Result<(), SearchError>;
    /// Marks a studio live or not; unknown studios are ignored.
    async fn set_live(&self, studio_id: &str, live: bool) -> Result<(), SearchError>;
    /// Removes a studio.
    async fn remove(&self, studio_id: &str) -> Result<(), SearchError>;
    /// Makes the index hold exactly `docs`, live states as given: a
    /// rebuild from the database, written at once.
    async fn replace_all(&self, docs: Vec<StudioDoc>) -> Result<(), SearchError>;
    /// Runs a search.
    async fn search(&self, query: &StudioQuery) -> Result<SearchPage, SearchError>;
}

/// A shared handle to whichever index is configured.
pub type SharedIndex = Arc<dyn StudioIndex>;

/// Tantivy, in this process.
pub struct TantivyIndex {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
}

#[derive(Clone, Copy)]
struct Fields {
    studio_id: Field,
    owner_id: Field,
    name: Field,
    description: Field,
    tags: Field,
    live: Field,
    created_at: Field,
    doc: Field,
}

/// Memory the index writer may buffer before it flushes a segment.
const WRITER_MEMORY: usize = 32 * 1024 * 1024;

impl TantivyIndex {
    /// An index in memory, rebuilt from events at every start.
    pub fn in_memory() -> Result<Self, SearchError> {
        let (schema, fields) = schema();
        Self::with_index(Index::create_in_ram(schema), fields)
    }

    /// An index kept in `dir`, created when missing.
    pub fn in_dir(dir: &Path) -> Result<Self, SearchError> {
        std::fs::create_dir_all(dir).map_err(|err| SearchError::Directory(err.to_string()))?;
        let (schema, fields) = schema();
        let directory = tantivy::directory::MmapDirectory::open(dir)
            .map_err(|err| SearchError::Directory(err.to_string()))?;
        Self::with_index(Index::open_or_create(directory, schema)?, fields)
    }

    fn with_index(index: Index, fields: Fields) -> Result<Self, SearchError> {
        let writer = index.writer(WRITER_MEMORY)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            reader,
            writer: Mutex::new(writer),
            fields,
        })
    }

    fn stored(&self, studio_id: &str) -> Result<Option<StudioDoc>, SearchError> {
        let searcher = self.reader.searcher();
        let query = TermQuery::new(
            Term::from_field_text(self.fields.studio_id, studio_id),
            IndexRecordOption::Basic,
        );
        let found = searcher.search(&query, &TopDocs::with_limit(1).order_by_score())?;
        let Some((_, address)) = found.first() else {
            return Ok(None);
        };
        let doc: TantivyDocument = searcher.doc(*address)?;
        Ok(self.decode(&doc))
    }

    fn decode(&self, doc: &TantivyDocument) -> Option<StudioDoc> {
        let json = doc.get_first(self.fields.doc)?.as_str()?;
        serde_json::from_str(json).ok()
    }

    fn write(&self, doc: Option<&StudioDoc>, studio_id: &str) -> Result<(), SearchError> {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer.delete_term(Term::from_field_text(self.fields.studio_id, studio_id));
        if let Some(doc) = doc {
            writer.add_document(self.document(doc))?;
        }
        // Small, frequent commits: a studio is searchable as soon as its
        // event is handled.
        self.commit(writer)
    }

    fn commit(
        &self,
        mut writer: std::sync::MutexGuard<'_, IndexWriter>,
    ) -> Result<(), SearchError> {
        writer.commit()?;
        drop(writer);
        self.reader.reload()?;
        Ok(())
    }

    fn document(&self, doc: &StudioDoc) -> TantivyDocument {
        let f = self.fields;
        let mut indexed = TantivyDocument::default();
        indexed.add_text(f.studio_id, &doc.studio_id);
        indexed.add_text(f.owner_id, &doc.owner_id);
        indexed.add_text(f.name, &doc.name);
        indexed.add_text(f.description, &doc.description);
        for tag in &doc.tags {
            indexed.add_text(f.tags, tag.to_lowercase());
        }
        indexed.add_u64(f.live, u64::from(doc.live));
        indexed.add_u64(f.created_at, doc.created_at_ms);
        indexed.add_text(f.doc, serde_json::to_string(doc).unwrap_or_default());
        indexed
    }

    fn query(&self, query: &StudioQuery) -> Box<dyn Query> {
        let f = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if let Some(text) = query.text.as_deref().filter(|t| !t.trim().is_empty()) {
            for word in words(text) {
                clauses.push((Occur::Must, word_query(f, &word)));
            }
        }
        if let Some(owner) = &query.owner {
            clauses.push((Occur::Must, term(Term::from_field_text(f.owner_id, owner))));
        }
        if let Some(live) = query.live {
            clauses.push((
                Occur::Must,
                term(Term::from_field_u64(f.live, u64::from(live))),
            ));
        }
        for tag in &query.tags {
            let tag = tag.to_lowercase();
            clauses.push((Occur::Must, term(Term::from_field_text(f.tags, &tag))));
        }
        if query.created_from_ms.is_some() || query.created_until_ms.is_some() {
            let lower = query
                .created_from_ms
                .map(|ms| Bound::Included(Term::from_field_u64(f.created_at, ms)))
                .unwrap_or(Bound::Unbounded);
            let upper = query
                .created_until_ms
                .map(|ms| Bound::Excluded(Term::from_field_u64(f.created_at, ms)))
                .unwrap_or(Bound::Unbounded);
            clauses.push((Occur::Must, Box::new(RangeQuery::new(lower, upper))));
        }
        if clauses.is_empty() {
            return Box::new(tantivy::query::AllQuery);
        }
        Box::new(BooleanQuery::new(clauses))
    }
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let fields = Fields {
        studio_id: builder.add_text_field("studio_id", STRING),
        owner_id: builder.add_text_field("owner_id", STRING),
        name: builder.add_text_field("name", TEXT),
        description: builder.add_text_field("description", TEXT),
        tags: builder.add_text_field("tags", STRING),
        live: builder.add_u64_field("live", INDEXED),
        created_at: builder.add_u64_field("created_at", INDEXED | FAST),
        doc: builder.add_text_field("doc", STORED),
    };
    (builder.build(), fields)
}

fn term(term: Term) -> Box<dyn Query> {
    Box::new(TermQuery::new(term, IndexRecordOption::Basic))
}

/// The words of a query as the default tokenizer makes them: lowercase,
/// split on anything not alphanumeric, at most 8.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(8)
        .map(str::to_lowercase)
        .collect()
}

/// One word in name or description: an exact match scores highest, one
/// within the typos its length allows (one from 4 letters, two from 8)
/// still matches; the last word may also be the start of a longer one.
fn word_query(f: Fields, word: &str) -> Box<dyn Query> {
    let typos = match word.chars().count() {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    };
    let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for (field, weight) in [(f.name, 2.0), (f.description, 1.0)] {
        let exact = Term::from_field_text(field, word);
        alternatives.push((
            Occur::Should,
            Box::new(BoostQuery::new(term(exact.clone()), weight * 2.0)),
        ));
        if typos > 0 {
            alternatives.push((
                Occur::Should,
                Box::new(BoostQuery::new(
                    Box::new(FuzzyTermQuery::new(exact.clone(), typos, true)),
                    weight,
                )),
            ));
        }
        alternatives.push((
            Occur::Should,
            Box::new(BoostQuery::new(
                Box::new(FuzzyTermQuery::new_prefix(exact, 0, true)),
                weight * 0.5,
            )),
        ));
    }
    Box::new(BooleanQuery::new(alternatives))
}

#[async_trait]
impl StudioIndex for TantivyIndex {
    async fn prepare(&self) -> Result<bool, SearchError> {
        Ok(self.reader.searcher().num_docs() == 0)
    }

    async fn upsert(&self, mut doc: StudioDoc) -> Result<(), SearchError> {
        if let Some(stored) = self.stored(&doc.studio_id)? {
            doc.live = stored.live;
        }
        let studio_id = doc.studio_id.clone();
        self.write(Some(&doc), &studio_id)
    }

    async fn set_live(&self, studio_id: &str, live: bool) -> Result<(), SearchError> {
        match self.stored(studio_id)? {
            Some(mut doc) => {
                doc.live = live;
                self.write(Some(&doc), studio_id)
            }
            None => Ok(()),
        }
    }

    async fn remove(&self, studio_id: &str) -> Result<(), SearchError> {
        self.write(None, studio_id)
    }

    async fn replace_all(&self, docs: Vec<StudioDoc>) -> Result<(), SearchError> {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer.delete_all_documents()?;
        for doc in &docs {
            writer.add_document(self.document(doc))?;
        }
        self.commit(writer)
    }

    async fn search(&self, query: &StudioQuery) -> Result<SearchPage, SearchError> {
        let searcher = self.reader.searcher();
        let tantivy_query = self.query(query);
        let limit = query.limit.clamp(1, 100);
        let top = TopDocs::with_limit(limit).and_offset(query.offset);
        let has_text = query.text.as_deref().is_some_and(|t| !t.trim().is_empty());
        let addresses: Vec<tantivy::DocAddress> = match (query.sort, has_text) {
            (Sort::Relevance, true) => {
                let (docs, _) = searcher.search(&tantivy_query, &(top.order_by_score(), Count))?;
                docs.into_iter().map(|(_, address)| address).collect()
            }
            (Sort::Oldest, _) => searcher
                .search(
                    &tantivy_query,
                    &top.order_by_fast_field::<u64>("created_at", Order::Asc),
                )?
                .into_iter()
                .map(|(_, address)| address)
                .collect(),
            _ => searcher
                .search(
                    &tantivy_query,
                    &top.order_by_fast_field::<u64>("created_at", Order::Desc),
                )?
                .into_iter()
                .map(|(_, address)| address)
                .collect(),
        };
        let total = searcher.search(&tantivy_query, &Count)? as u64;
        let mut hits = Vec::with_capacity(addresses.len());
        for address in addresses {
            let doc: TantivyDocument = searcher.doc(address)?;
            if let Some(studio) = self.decode(&doc) {
                hits.push(studio);
            }
        }
        Ok(SearchPage { total, hits })
    }
}
